//! Faults an admin injects into one server's traffic, changeable at run time.

use std::sync::Mutex;
use std::time::Duration;

use shared::protocol::FaultSettings;
use shared::raft::NodeId;

pub struct FaultState {
    settings: Mutex<FaultSettings>,
}

/// What to do with one outgoing message.
pub enum Verdict {
    Send,
    Drop,
    Delay(Duration),
}

impl FaultState {
    pub fn new(time_scale: f64) -> FaultState {
        FaultState { settings: Mutex::new(FaultSettings { time_scale, ..FaultSettings::normal() }) }
    }

    pub fn get(&self) -> FaultSettings {
        self.settings.lock().expect("fault settings lock").clone()
    }

    /// Just the time scale: the Raft loop asks on every batch, and need not copy the lists.
    pub fn time_scale(&self) -> f64 {
        self.settings.lock().expect("fault settings lock").time_scale
    }

    pub fn set(&self, settings: FaultSettings) {
        *self.settings.lock().expect("fault settings lock") = settings;
    }

    pub fn outgoing(&self, to: NodeId) -> Verdict {
        let s = self.settings.lock().expect("fault settings lock");
        if s.blocked_to.contains(&to) {
            return Verdict::Drop;
        }
        if s.drop_rate > 0.0 && (crate::secret::random_u64() % 1_000_000) as f64 / 1_000_000.0 < s.drop_rate {
            return Verdict::Drop;
        }
        if s.delay_ms > 0 {
            return Verdict::Delay(Duration::from_millis(s.delay_ms));
        }
        Verdict::Send
    }

    pub fn accepts_from(&self, from: NodeId) -> bool {
        !self.settings.lock().expect("fault settings lock").blocked_from.contains(&from)
    }
}
