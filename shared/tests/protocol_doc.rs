//! Every example in docs/protocol.md parses as the frame type its code block names, so the
//! document cannot drift from the code.

use shared::check::Operation;
use shared::protocol::{
    ClientFrame, ProxyFrame, ServerInbound, ServerOutbound, SupervisorInbound, SupervisorOutbound,
};

fn check<T: serde::de::DeserializeOwned>(json: &str) -> Result<(), String> {
    serde_json::from_str::<T>(json).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn every_example_in_the_protocol_document_parses() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    let mut blocks = 0;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(kind) = line.strip_prefix("```json ") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        let json = body.join("\n");
        let result = match kind.trim() {
            "ClientFrame" => check::<ClientFrame>(&json),
            "ProxyFrame" => check::<ProxyFrame>(&json),
            "ServerInbound" => check::<ServerInbound>(&json),
            "ServerOutbound" => check::<ServerOutbound>(&json),
            "SupervisorInbound" => check::<SupervisorInbound>(&json),
            "SupervisorOutbound" => check::<SupervisorOutbound>(&json),
            "Operation" => check::<Operation>(&json),
            other => Err(format!("unknown frame type '{other}' in a code block")),
        };
        if let Err(e) = result {
            panic!("docs/protocol.md: a {kind} example does not parse: {e}\n{json}");
        }
        blocks += 1;
    }
    assert!(blocks >= 40, "only {blocks} examples found");
}

#[test]
fn the_document_names_every_error_kind_and_the_real_limits() {
    use shared::protocol::{ErrorKind, MAX_FRAME_BYTES, MAX_WRITE_BYTES};
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    for kind in ErrorKind::ALL {
        // A new kind breaks this match until it is added to ErrorKind::ALL, and then the document.
        match kind {
            ErrorKind::BadRequest
            | ErrorKind::FrameTooLarge
            | ErrorKind::Unauthorized
            | ErrorKind::VersionMismatch
            | ErrorKind::NoLeader
            | ErrorKind::Timeout
            | ErrorKind::Unavailable
            | ErrorKind::NotSupported
            | ErrorKind::StaleSession
            | ErrorKind::SessionConflict
            | ErrorKind::SessionExpired
            | ErrorKind::StoreFull
            | ErrorKind::TooLarge
            | ErrorKind::WrongCluster => {}
        }
        assert!(
            doc.contains(&format!("| `{}` |", kind.as_str())),
            "docs/protocol.md lacks a row for {kind:?}"
        );
    }
    assert_eq!(MAX_FRAME_BYTES, 8 << 20, "the document says 8 MiB");
    assert_eq!(MAX_FRAME_BYTES - MAX_WRITE_BYTES, 64 << 10, "the document says 8 MiB − 64 KiB");
    assert!(doc.contains("frames larger than 8 MiB (`MAX_FRAME_BYTES`)"));
    assert!(doc.contains("(8 MiB − 64 KiB)"));
}
