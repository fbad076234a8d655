//! Faults an admin injects into one server's traffic and clock, changeable at run time.
//!
//! The settings live here, shared by the networking tasks and the Raft loop; the Raft loop
//! turns them into its clock state and its network policy when told they changed.

use std::sync::Mutex;

use shared::protocol::{FaultSettings, MAX_DELAY_MS};
use shared::raft::Millis;
use shared::transit::NetworkPolicy;

pub struct FaultState {
    settings: Mutex<FaultSettings>,
}

impl FaultState {
    pub fn new(initial: FaultSettings) -> FaultState {
        FaultState { settings: Mutex::new(initial) }
    }

    pub fn get(&self) -> FaultSettings {
        self.settings.lock().expect("fault settings lock").clone()
    }

    pub fn set(&self, settings: FaultSettings) {
        *self.settings.lock().expect("fault settings lock") = settings;
    }
}

/// What the network does to this server's messages (see `FaultSettings::network_policy`).
pub fn policy(settings: &FaultSettings, election_timeout: Millis) -> NetworkPolicy {
    settings.network_policy(election_timeout)
}

/// Settings an admin may send, made safe: rates in range, delays and latency bounded, the time
/// scale within what the clock accepts.
pub fn sanitize(mut f: FaultSettings) -> FaultSettings {
    f.drop_rate = if f.drop_rate.is_finite() { f.drop_rate.clamp(0.0, 1.0) } else { 0.0 };
    f.delay_ms = f.delay_ms.min(MAX_DELAY_MS);
    f.latency_ms = f.latency_ms.map(|l| l.min(MAX_DELAY_MS));
    f.jitter_ms = f.jitter_ms.map(|j| j.min(MAX_DELAY_MS));
    f.max_entries = f.max_entries.map(|n| n.clamp(1, 100_000));
    f.time_scale = super::clock::sanitize(f.time_scale);
    f
}
