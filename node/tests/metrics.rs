//! `GET /metrics` on every server and proxy of a real cluster, read by a Prometheus
//! text-format parser, holds what the cluster did.

mod support;

use std::io::{BufRead, Read, Write};
use std::process::Command;

use prometheus_parse::{Scrape, Value};
use support::{BIN, Cluster, TOKEN, serial};

fn scrape(address: &str) -> Scrape {
    let mut tcp = std::net::TcpStream::connect(address).unwrap();
    write!(tcp, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    let lines = body.as_bytes().lines().map(|l| l.map_err(std::io::Error::other));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not the Prometheus text format: {e}\n{body}"))
}

fn value(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {label:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn every_server_and_proxy_exposes_what_the_cluster_did_in_the_prometheus_format() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let proxy = cluster.proxy(0);
    for i in 0..10 {
        let out = Command::new(BIN)
            .args(["client", "--proxy", &proxy, "--token", TOKEN, "put", &format!("m{i}"), "v"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let refused = Command::new(BIN)
        .args(["client", "--proxy", &proxy, "put", "x", "y"])
        .env_remove("CONSENSO_TOKEN")
        .current_dir("/")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let read = Command::new(BIN).args(["client", "--proxy", &proxy, "get", "m1"]).output().unwrap();
    assert!(read.status.success());

    let status = cluster.status().unwrap();
    let leader = status.leader.unwrap();
    for node in &status.nodes {
        let metrics = scrape(&node.address);
        assert!(metrics.samples.iter().all(|s| s.metric.starts_with("consenso_")));
        let leads = node.id == leader;
        assert_eq!(value(&metrics, "consenso_role", Some(("role", "leader"))), if leads { 1.0 } else { 0.0 });
        assert_eq!(value(&metrics, "consenso_term", None), status.term as f64);
        assert!(value(&metrics, "consenso_commit_index", None) >= 10.0);
        assert!(value(&metrics, "consenso_applied_index", None) >= 10.0);
        assert!(value(&metrics, "consenso_fsync_seconds", None) > 0.0, "rounds were made durable");
        if leads {
            assert!(value(&metrics, "consenso_messages_sent_total", Some(("kind", "AppendEntries"))) > 0.0);
            assert!(value(&metrics, "consenso_elections_won_total", None) >= 1.0);
            assert!(value(&metrics, "consenso_proposals_total", None) >= 10.0);
            assert!(
                value(&metrics, "consenso_write_answer_seconds", None) >= 10.0,
                "every write the leader answered is timed"
            );
        } else {
            assert!(
                value(&metrics, "consenso_messages_received_total", Some(("kind", "AppendEntries"))) > 0.0
            );
        }
    }
    let metrics = scrape(&proxy);
    assert_eq!(value(&metrics, "consenso_leader", None), leader as f64);
    // Each CLI write opens its session first; the one without the token gets no further.
    assert!(value(&metrics, "consenso_client_requests_total", Some(("kind", "register"))) >= 11.0);
    assert!(value(&metrics, "consenso_client_requests_total", Some(("kind", "put"))) >= 10.0);
    assert!(value(&metrics, "consenso_client_errors_total", Some(("kind", "unauthorized"))) >= 1.0);
    assert!(value(&metrics, "consenso_client_reads_total", Some(("consistency", "linearizable"))) >= 1.0);
    assert_eq!(value(&metrics, "consenso_servers_reachable", None), 3.0);
}
