//! `GET /metrics` on every server and proxy, in the Prometheus text format (version 0.0.4),
//! every name prefixed `consenso_`.
//!
//! Written by hand rather than with a client library: a few dozen counters and gauges kept in
//! atomics by the code that already sees the events, and a text writer, are all this needs;
//! the format is checked by a Prometheus parser in the tests.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared::event::Consistency;
use shared::protocol::ErrorKind;
use shared::raft::{MessageKind, NodeId, Role};

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Durations in buckets (seconds), as Prometheus histograms count them: each bucket counts the
/// observations at or below its bound.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<Counter>,
    sum_micros: Counter,
    count: Counter,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| Counter::default()).collect(),
            sum_micros: Counter::default(),
            count: Counter::default(),
        }
    }

    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.add(1);
            }
        }
        self.sum_micros.add(d.as_micros() as u64);
        self.count.add(1);
    }
}

/// The text being written.
pub struct Text {
    out: String,
    labels: String,
}

impl Text {
    /// Every sample gets the `base` labels (e.g. which node).
    pub fn new(base: &[(&str, String)]) -> Text {
        let labels = base.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect::<Vec<_>>().join(",");
        Text { out: String::new(), labels }
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP consenso_{name} {help}");
        let _ = writeln!(self.out, "# TYPE consenso_{name} {kind}");
    }

    fn sample(&mut self, name: &str, extra: &[(&str, &str)], value: impl std::fmt::Display) {
        let mut labels = self.labels.clone();
        for (k, v) in extra {
            if !labels.is_empty() {
                labels.push(',');
            }
            let _ = write!(labels, "{k}=\"{}\"", escape(v));
        }
        if labels.is_empty() {
            let _ = writeln!(self.out, "consenso_{name} {value}");
        } else {
            let _ = writeln!(self.out, "consenso_{name}{{{labels}}} {value}");
        }
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// One metric with a label taking each of `values`.
    pub fn labelled<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.header(name, kind, help);
        for (value_label, value) in values {
            self.sample(name, &[(label, value_label)], value);
        }
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, "histogram", help);
        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
            self.sample(&format!("{name}_bucket"), &[("le", &bound.to_string())], bucket.get());
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count.get());
        self.sample(&format!("{name}_sum"), &[], h.sum_micros.get() as f64 / 1e6);
        self.sample(&format!("{name}_count"), &[], h.count.get());
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The answer to `GET /metrics`.
pub fn response(text: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

const CONSISTENCIES: [Consistency; 3] = [Consistency::Linearizable, Consistency::Leader, Consistency::Stale];

fn consistency_index(c: Consistency) -> usize {
    CONSISTENCIES.iter().position(|x| *x == c).expect("every consistency is listed")
}

fn consistency_name(c: Consistency) -> &'static str {
    match c {
        Consistency::Linearizable => "linearizable",
        Consistency::Leader => "leader",
        Consistency::Stale => "stale",
    }
}

/// What a server counts. The Raft loop updates it; `/metrics` reads it.
pub struct ServerMetrics {
    pub role: Gauge,
    pub term: Gauge,
    pub commit: Gauge,
    pub applied: Gauge,
    pub last_index: Gauge,
    pub snapshot_index: Gauge,
    pub elections_started: Counter,
    pub elections_won: Counter,
    pub proposals: Counter,
    reads: [Counter; 3],
    sent: [Counter; MessageKind::ALL.len()],
    received: [Counter; MessageKind::ALL.len()],
    pub fsync: Histogram,
    pub write_answered: Histogram,
}

/// Bounds of the fsync and write-answer histograms, in seconds: a fast SSD's flush or a loopback
/// cluster's answer take a fraction of a millisecond; a struggling disk or a WAN, tens.
const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

const ROLES: [Role; 4] = [Role::Follower, Role::PreCandidate, Role::Candidate, Role::Leader];

impl Default for ServerMetrics {
    fn default() -> ServerMetrics {
        ServerMetrics {
            role: Gauge::default(),
            term: Gauge::default(),
            commit: Gauge::default(),
            applied: Gauge::default(),
            last_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            elections_started: Counter::default(),
            elections_won: Counter::default(),
            proposals: Counter::default(),
            reads: Default::default(),
            sent: Default::default(),
            received: Default::default(),
            fsync: Histogram::new(SECONDS_BUCKETS),
            write_answered: Histogram::new(SECONDS_BUCKETS),
        }
    }
}

fn kind_index(kind: MessageKind) -> usize {
    MessageKind::ALL.iter().position(|k| *k == kind).expect("every kind is listed")
}

impl ServerMetrics {
    pub fn set_role(&self, role: Role) {
        self.role.set(ROLES.iter().position(|r| *r == role).expect("every role is listed") as u64);
    }

    pub fn read(&self, consistency: Consistency) {
        self.reads[consistency_index(consistency)].add(1);
    }

    pub fn sent(&self, kind: MessageKind) {
        self.sent[kind_index(kind)].add(1);
    }

    pub fn received(&self, kind: MessageKind) {
        self.received[kind_index(kind)].add(1);
    }

    pub fn render(&self, node: NodeId) -> String {
        let mut t = Text::new(&[("node", node.to_string())]);
        let role = ROLES[self.role.get() as usize];
        t.labelled(
            "role",
            "gauge",
            "1 for the role this server plays now",
            "role",
            ROLES.map(|r| (role_name(r), u64::from(r == role))),
        );
        t.gauge("term", "The current term", self.term.get());
        t.gauge("commit_index", "Highest log index known to be committed", self.commit.get());
        t.gauge("applied_index", "Highest log index applied to the store", self.applied.get());
        t.gauge("last_log_index", "Index of the last entry in the log", self.last_index.get());
        t.gauge("snapshot_index", "Index the latest snapshot covers", self.snapshot_index.get());
        t.gauge(
            "log_entries",
            "Entries in the log after the snapshot",
            self.last_index.get().saturating_sub(self.snapshot_index.get()),
        );
        t.histogram("fsync_seconds", "Time to make a round durable (write and fsync)", &self.fsync);
        t.histogram(
            "write_answer_seconds",
            "From a write's arrival at this server to its answer (refusals included): on the leader, \
             the append, a majority's fsyncs, the commit and the apply (the proxy's hops and the client's are not in it)",
            &self.write_answered,
        );
        let kinds = |counters: &[Counter; MessageKind::ALL.len()]| {
            MessageKind::ALL.iter().zip(counters.iter()).map(|(k, c)| (k.name(), c.get())).collect::<Vec<_>>()
        };
        t.labelled(
            "messages_sent_total",
            "counter",
            "Raft messages sent, by kind",
            "kind",
            kinds(&self.sent),
        );
        t.labelled(
            "messages_received_total",
            "counter",
            "Raft messages received, by kind",
            "kind",
            kinds(&self.received),
        );
        t.counter(
            "elections_started_total",
            "Elections this server started (as candidate)",
            self.elections_started.get(),
        );
        t.counter("elections_won_total", "Elections this server won", self.elections_won.get());
        t.counter("proposals_total", "Client writes proposed to this server", self.proposals.get());
        t.labelled(
            "reads_total",
            "counter",
            "Client reads asked of this server, by consistency",
            "consistency",
            CONSISTENCIES.iter().zip(&self.reads).map(|(c, n)| (consistency_name(*c), n.get())),
        );
        t.finish()
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "pre_candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Client requests a proxy handled, by kind.
pub const REQUEST_KINDS: [&str; 7] = ["put", "delete", "cas", "get", "status", "admin", "register"];

/// What a proxy counts.
#[derive(Default)]
pub struct ProxyMetrics {
    requests: [Counter; REQUEST_KINDS.len()],
    errors: [Counter; ErrorKind::ALL.len()],
    reads: [Counter; 3],
}

impl ProxyMetrics {
    pub fn request(&self, kind: &str) {
        if let Some(i) = REQUEST_KINDS.iter().position(|k| *k == kind) {
            self.requests[i].add(1);
        }
    }

    pub fn error(&self, kind: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).expect("every error kind is listed");
        self.errors[i].add(1);
    }

    pub fn read(&self, consistency: Consistency) {
        self.reads[consistency_index(consistency)].add(1);
    }

    /// The counters, and the cluster as this proxy sees it: `(leader, term, servers reachable,
    /// servers known)`.
    pub fn render(&self, proxy: &str, cluster: (Option<NodeId>, u64, u64, u64)) -> String {
        let mut t = Text::new(&[("proxy", proxy.to_string())]);
        let (leader, term, reachable, known) = cluster;
        t.gauge("leader", "The leader's node id (0 when none is known)", leader.unwrap_or(0));
        t.gauge("term", "The highest term any reachable server reports", term);
        t.gauge("servers_reachable", "Servers answering this proxy", reachable);
        t.gauge("servers", "Servers this proxy knows", known);
        t.labelled(
            "client_requests_total",
            "counter",
            "Client requests handled, by kind",
            "kind",
            REQUEST_KINDS.iter().zip(&self.requests).map(|(k, n)| (*k, n.get())),
        );
        t.labelled(
            "client_errors_total",
            "counter",
            "Errors answered to clients, by kind",
            "kind",
            ErrorKind::ALL.iter().zip(&self.errors).map(|(k, n)| (k.as_str(), n.get())),
        );
        t.labelled(
            "client_reads_total",
            "counter",
            "Client reads, by consistency",
            "consistency",
            CONSISTENCIES.iter().zip(&self.reads).map(|(c, n)| (consistency_name(*c), n.get())),
        );
        t.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_every_bucket_at_or_above_it() {
        let h = Histogram::new(&[0.001, 0.01, 0.1]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        let mut t = Text::new(&[]);
        t.histogram("x_seconds", "test", &h);
        let text = t.finish();
        assert!(text.contains("consenso_x_seconds_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("consenso_x_seconds_bucket{le=\"0.1\"} 2\n"), "{text}");
        assert!(text.contains("consenso_x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("consenso_x_seconds_count 3\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut t = Text::new(&[("proxy", "a\"b\\c".to_string())]);
        t.gauge("g", "help", 1);
        assert!(t.finish().contains(r#"consenso_g{proxy="a\"b\\c"} 1"#));
    }
}
