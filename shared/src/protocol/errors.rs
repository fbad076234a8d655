//! The protocol's errors: a kind every program can act on, and a message for people.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// Every error a client can see. All but `BadRequest`, `Unauthorized`, `VersionMismatch` and
/// `FrameTooLarge` are worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed JSON, an unknown `type`, a missing field.
    BadRequest,
    /// The frame exceeds `MAX_FRAME_BYTES`.
    FrameTooLarge,
    /// Admin command or peer connection without the right token.
    Unauthorized,
    VersionMismatch,
    /// No leader is known (an election is under way, or no majority is up).
    NoLeader,
    /// The operation did not complete in time. A write may or may not have been applied; retry
    /// it with the same session to find out without applying it twice.
    Timeout,
    /// No server (or supervisor) could be reached.
    Unavailable,
    /// The command needs something this deployment lacks (e.g. restart without a supervisor).
    NotSupported,
    /// The write's sequence number is below what the session has said it knows (or older than
    /// the 256 results a session keeps): it was not applied now, and its result is forgotten.
    StaleSession,
    /// The session already has a write with this sequence number, and it was another write.
    SessionConflict,
    /// The cluster does not have the session — forgotten (too many clients since) or never
    /// registered: a retry is refused rather than risk applying it twice. Register a new one.
    SessionExpired,
    /// The store is at its configured size limit: the write changed nothing.
    StoreFull,
    /// The write cannot fit in one frame between nodes.
    TooLarge,
    /// The server belongs to another cluster (or was initialized differently): a peer from
    /// another cluster, or `init` of a server that is already a member.
    WrongCluster,
}

impl ErrorKind {
    /// Every kind, for counters and documentation checks.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::BadRequest,
        ErrorKind::FrameTooLarge,
        ErrorKind::Unauthorized,
        ErrorKind::VersionMismatch,
        ErrorKind::NoLeader,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::NotSupported,
        ErrorKind::StaleSession,
        ErrorKind::SessionConflict,
        ErrorKind::SessionExpired,
        ErrorKind::StoreFull,
        ErrorKind::TooLarge,
        ErrorKind::WrongCluster,
    ];

    /// Whether a write answered with this error certainly did not take effect, so the client
    /// knows its outcome. After a `timeout` (or a lost proxy) it may still be applied.
    pub fn outcome_is_known(self) -> bool {
        !matches!(self, ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::NoLeader)
    }

    /// Whether a write answered with this error certainly had no effect, ever: it never
    /// reached the log, or was applied as a no-op. (`stale_session` and `session_expired`
    /// refuse a copy, but an earlier copy may have been applied.)
    pub fn had_no_effect(self) -> bool {
        matches!(
            self,
            ErrorKind::BadRequest
                | ErrorKind::FrameTooLarge
                | ErrorKind::Unauthorized
                | ErrorKind::VersionMismatch
                | ErrorKind::NotSupported
                | ErrorKind::SessionConflict
                | ErrorKind::StoreFull
                | ErrorKind::TooLarge
                | ErrorKind::WrongCluster
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::FrameTooLarge => "frame_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::VersionMismatch => "version_mismatch",
            ErrorKind::NoLeader => "no_leader",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::StaleSession => "stale_session",
            ErrorKind::SessionConflict => "session_conflict",
            ErrorKind::SessionExpired => "session_expired",
            ErrorKind::StoreFull => "store_full",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::WrongCluster => "wrong_cluster",
        }
    }
}
