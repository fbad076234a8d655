//! Admin commands as the views send them.

use shared::protocol::{AdminCommand, ClientFrame};

use crate::app::Shared;

pub fn admin(shared: &Shared, command: AdminCommand) {
    let what = command.describe();
    shared.request(what, move |id| ClientFrame::Admin { id, command });
}
