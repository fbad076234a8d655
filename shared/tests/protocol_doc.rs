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
