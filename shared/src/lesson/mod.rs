//! Lessons: short scripts that stage one of Raft's rules on a live cluster, move by move, with
//! a caption in English and Spanish for each move and a final check that the lesson happened.
//!
//! A lesson is an `async fn` over a [`Driver`]: whatever can act on a cluster (admin commands,
//! writes, reads, the cluster's status) and show captions. The proxy drives lessons on the
//! real processes — for pages, which show the captions to every viewer and advance on *Next*,
//! and for `consenso scenario run`, which advances by itself and prints them. The scripts
//! themselves do no I/O and read no clock, so they compile for the page too.
//!
//! # Layout
//!
//! - this file: the catalog, the driver trait, the status pages show, and helpers the scripts
//!   share (waiting for a condition, finding the leader, stepping held messages).
//! - `elections`: leader-crash, split-vote, pre-vote, partitioned-leader, leader-transfer.
//! - `logs`: replication, restart-catch-up, log-repair, snapshot, stale-read.
//! - `figure8`: Figure 8 of the paper, message by message.
//! - `membership`: a server joins as a learner, the leader leaves.

mod elections;
mod figure8;
mod logs;
mod membership;

use crate::event::{Consistency, LogMirror};
use crate::protocol::{AdminCommand, ClusterStatus, HeldMessage, NodeView, ProcessState};
// The lesson's state and controls travel in frames: defined with them, shown here.
pub use crate::protocol::{LessonAction, LessonStatus, Outcome, Text, say};
use crate::raft::{Index, MessageKind, NodeId, Role, Term};

/// One lesson in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonInfo {
    pub name: &'static str,
    pub title: (&'static str, &'static str),
    /// Servers the lesson needs at least.
    pub min_nodes: usize,
    /// It works on a cluster of a student's own node (`--server-cmd`): it needs nothing but
    /// roles, terms, votes and messages. The others read the store, or rely on what
    /// Consenso's servers do (pre-vote, check-quorum, snapshots, TimeoutNow, membership).
    pub on_own_nodes: bool,
}

impl LessonInfo {
    pub fn title(&self) -> Text {
        say(self.title.0, self.title.1)
    }
}

/// Every lesson, in the order a course would take them.
pub const CATALOG: &[LessonInfo] = &[
    LessonInfo {
        name: "replication",
        title: ("A write is replicated and committed", "Una escritura se replica y se confirma"),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "leader-crash",
        title: ("The leader crashes: an election, move by move", "El líder cae: una elección, paso a paso"),
        min_nodes: 3,
        on_own_nodes: true,
    },
    LessonInfo {
        name: "split-vote",
        title: (
            "A split vote, and how random timeouts end it",
            "Un voto dividido, y cómo lo resuelven los tiempos aleatorios",
        ),
        min_nodes: 3,
        on_own_nodes: true,
    },
    LessonInfo {
        name: "restart-catch-up",
        title: ("A restarted server catches up", "Un servidor reiniciado se pone al día"),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "partitioned-leader",
        title: ("A leader cut off from the majority", "Un líder aislado de la mayoría"),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "figure-8",
        title: (
            "Figure 8: why a leader commits only entries of its own term",
            "Figura 8: por qué un líder solo confirma entradas de su término",
        ),
        min_nodes: 5,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "log-repair",
        title: ("A divergent log is repaired by the new leader", "El nuevo líder repara un log divergente"),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "snapshot",
        title: (
            "Snapshots: compacting the log and catching up from one",
            "Instantáneas: compactar el log y ponerse al día con una",
        ),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "stale-read",
        title: (
            "Stale reads versus linearizable reads",
            "Lecturas obsoletas frente a lecturas linealizables",
        ),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "pre-vote",
        title: (
            "Pre-vote: a returning server does not disrupt the leader",
            "Prevoto: un servidor que vuelve no derriba al líder",
        ),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "leader-transfer",
        title: ("Handing leadership over", "Ceder el liderazgo"),
        min_nodes: 3,
        on_own_nodes: false,
    },
    LessonInfo {
        name: "membership",
        title: (
            "Changing the members: a server joins, the leader leaves",
            "Cambiar los miembros: entra un servidor, sale el líder",
        ),
        min_nodes: 3,
        on_own_nodes: false,
    },
];

pub fn find(name: &str) -> Option<&'static LessonInfo> {
    CATALOG.iter().find(|l| l.name == name)
}

impl LessonStatus {
    /// A lesson about to start, or why there is no such lesson (the proxy's and the
    /// playground's).
    pub fn starting(name: &str, auto: bool) -> Result<LessonStatus, crate::protocol::ApiError> {
        let info = find(name).ok_or_else(|| {
            let names: Vec<&str> = CATALOG.iter().map(|l| l.name).collect();
            crate::protocol::ApiError::new(
                crate::protocol::ErrorKind::BadRequest,
                format!("there is no lesson '{name}' (lessons: {})", names.join(", ")),
            )
        })?;
        Ok(LessonStatus {
            name: name.to_string(),
            title: info.title(),
            captions: Vec::new(),
            waiting: false,
            auto,
            outcome: None,
        })
    }
}

/// Why a read sent to one server gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadRefused {
    /// The server refused it, and said why.
    Refused(crate::replica::ReplyError),
    /// The server did not answer in time.
    NoAnswer(NodeId),
}

impl std::fmt::Display for ReadRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadRefused::Refused(error) => write!(f, "{error}"),
            ReadRefused::NoAnswer(node) => write!(f, "node {node} did not answer"),
        }
    }
}

/// Why a lesson could not go on, or what its check found wrong.
pub type Failure = Text;

/// What a lesson needs from the cluster. The proxy implements it on the real processes.
#[allow(async_fn_in_trait)] // implemented by concrete types only; their futures keep their Send-ness
pub trait Driver {
    /// The cluster as the proxy sees it now (each server's part at most ~250 ms old).
    async fn status(&mut self) -> Result<ClusterStatus, Failure>;
    /// An admin command; its confirmation, or why it failed.
    async fn admin(&mut self, command: AdminCommand) -> Result<String, Failure>;
    /// Starts an admin command and returns at once (its answer goes to the notes): for a change
    /// the lesson watches while it happens, such as a server joining while time is stopped.
    fn admin_started(&mut self, command: AdminCommand);
    /// A client write through the proxy, retried until it is applied (or the patience ends).
    async fn write(&mut self, key: &str, value: &str) -> Result<Index, Failure>;
    /// A client write sent once, to one server, without waiting for its outcome.
    async fn write_via(&mut self, node: NodeId, key: &str, value: &str) -> Result<(), Failure>;
    /// A read served by one given server, or that server's refusal.
    async fn read_via(
        &mut self,
        node: NodeId,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<String>, ReadRefused>;
    /// A server's log as the proxy mirrors it.
    async fn log(&mut self, node: NodeId) -> LogMirror;
    /// Waits `ms` of real time.
    async fn sleep(&mut self, ms: u64);
    /// Real time in ms since some fixed moment: what waits measure themselves by (a status
    /// that takes long to build must not stretch a wait of 30 s into minutes).
    fn now(&mut self) -> u64;
    /// Shows a caption; when a person drives the lesson, waits until they go on.
    async fn caption(&mut self, text: Text);
}

/// Runs the lesson `name`: Ok with what it showed, or Err with what went wrong.
pub async fn run<D: Driver>(name: &str, d: &mut D) -> Result<Text, Failure> {
    let info = find(name).ok_or_else(|| {
        say(format!("there is no lesson '{name}'"), format!("no existe la lección «{name}»"))
    })?;
    let status = d.status().await?;
    let up = status.nodes.len();
    if up < info.min_nodes {
        return Err(say(
            format!(
                "this lesson needs {} servers; the cluster has {up} (start it with --nodes 5)",
                info.min_nodes
            ),
            format!(
                "esta lección necesita {} servidores; el clúster tiene {up} (arráncalo con --nodes 5)",
                info.min_nodes
            ),
        ));
    }
    let own_nodes = status.nodes.iter().any(|n| n.status.as_ref().is_some_and(|s| s.hosted.is_some()));
    if own_nodes && !info.on_own_nodes {
        let fit: Vec<&str> = CATALOG.iter().filter(|l| l.on_own_nodes).map(|l| l.name).collect();
        return Err(say(
            format!(
                "this lesson relies on what Consenso's own servers do (their store, pre-vote, snapshots, …); on a \
                 cluster of your own node these apply: {}",
                fit.join(", ")
            ),
            format!(
                "esta lección se apoya en lo que hacen los servidores de Consenso (su almacén, el prevoto, las \
                 instantáneas…); en un clúster de tu propio nodo sirven: {}",
                fit.join(", ")
            ),
        ));
    }
    let shown = match name {
        "replication" => logs::replication(d).await?,
        "leader-crash" => elections::leader_crash(d).await?,
        "split-vote" => elections::split_vote(d).await?,
        "restart-catch-up" => logs::restart_catch_up(d).await?,
        "partitioned-leader" => elections::partitioned_leader(d).await?,
        "figure-8" => figure8::figure_8(d).await?,
        "log-repair" => logs::log_repair(d).await?,
        "snapshot" => logs::snapshot(d).await?,
        "stale-read" => logs::stale_read(d).await?,
        "pre-vote" => elections::pre_vote(d).await?,
        "leader-transfer" => elections::leader_transfer(d).await?,
        "membership" => membership::membership(d).await?,
        other => unreachable!("lesson {other} is in the catalog but has no script"),
    };
    // Whatever a lesson shows, Raft's safety must have held throughout.
    let status = d.status().await?;
    if let Some(alarm) = status.alarms.first() {
        return Err(say(
            format!("the invariant monitor raised an alarm: {} — {}", alarm.property.name(), alarm.detail),
            format!(
                "el monitor de invariantes dio la alarma: {} — {}",
                alarm.property.name_es(),
                alarm.detail
            ),
        ));
    }
    Ok(shown)
}

// ---------------------------------------------------------------- helpers for the scripts

/// The leader every reachable server agrees on, and its term.
pub fn leader(status: &ClusterStatus) -> Option<(NodeId, Term)> {
    let id = status.leader?;
    let node = status.nodes.iter().find(|n| n.id == id && n.role == Some(Role::Leader))?;
    Some((id, node.term?))
}

/// Servers whose process is up (not crashed or paused) and that answer.
pub fn live(status: &ClusterStatus) -> Vec<NodeId> {
    status.nodes.iter().filter(|n| n.state == ProcessState::Up && n.role.is_some()).map(|n| n.id).collect()
}

/// One server as the status shows it.
pub fn view(status: &ClusterStatus, node: NodeId) -> Option<&NodeView> {
    status.nodes.iter().find(|n| n.id == node)
}

pub fn last_index(status: &ClusterStatus, node: NodeId) -> Option<Index> {
    view(status, node)?.last_log_index
}

pub fn role_of(status: &ClusterStatus, node: NodeId) -> Option<Role> {
    status.nodes.iter().find(|n| n.id == node)?.role
}

pub fn term_of(status: &ClusterStatus, node: NodeId) -> Option<Term> {
    status.nodes.iter().find(|n| n.id == node)?.term
}

/// Polls the status until `probe` finds what it waits for. `seconds` are of cluster time: in
/// slow motion the wait stretches with every timeout.
pub async fn wait_for<D: Driver, T>(
    d: &mut D,
    what: Text,
    seconds: f64,
    mut probe: impl FnMut(&ClusterStatus) -> Option<T>,
) -> Result<T, Failure> {
    let started = d.now();
    loop {
        let status = d.status().await?;
        if let Some(found) = probe(&status) {
            return Ok(found);
        }
        let limit = seconds * status.time_scale.max(1.0) * 1000.0;
        let waited = d.now().saturating_sub(started) as f64;
        if waited > limit {
            return Err(say(
                format!("gave up waiting for {} after {:.0} s", what.en, waited / 1000.0),
                format!("se dejó de esperar a {} tras {:.0} s", what.es, waited / 1000.0),
            ));
        }
        d.sleep(100).await;
    }
}

/// Waits for a leader that every reachable server agrees on.
pub async fn wait_leader<D: Driver>(d: &mut D, seconds: f64) -> Result<(NodeId, Term), Failure> {
    wait_for(d, say("a leader", "un líder"), seconds, leader).await
}

/// Restarts the cluster on empty disks and waits for its first leader.
pub async fn fresh_cluster<D: Driver>(d: &mut D) -> Result<(NodeId, Term), Failure> {
    d.admin(AdminCommand::Reset).await?;
    // The old incarnation's statuses linger a moment: wait for the new one to settle.
    wait_for(d, say("the restarted servers", "los servidores reiniciados"), 20.0, |s| {
        (s.nodes.iter().all(|n| n.state == ProcessState::Up && n.term.is_some())).then_some(())
    })
    .await?;
    wait_leader(d, 30.0).await
}

/// The held messages matching `pick`, oldest first.
pub async fn held<D: Driver>(
    d: &mut D,
    pick: impl Fn(&HeldMessage) -> bool,
) -> Result<Vec<HeldMessage>, Failure> {
    Ok(d.status().await?.time.messages.into_iter().filter(|m| pick(m)).collect())
}

/// Delivers held messages matching `pick`, one at a time in send order, until none is left
/// (at most `limit`). Messages sent as a consequence are delivered too if they match.
pub async fn deliver_all<D: Driver>(
    d: &mut D,
    limit: usize,
    pick: impl Fn(&HeldMessage) -> bool,
) -> Result<usize, Failure> {
    let mut delivered = 0;
    let mut quiet = 0;
    while delivered < limit {
        match held(d, &pick).await?.first() {
            Some(m) => {
                d.admin(AdminCommand::DeliverMessage { id: m.id }).await?;
                delivered += 1;
                quiet = 0;
            }
            // Answers may still be on their way into a queue: look twice before concluding.
            None if quiet < 3 => {
                quiet += 1;
                d.sleep(150).await;
            }
            None => break,
        }
    }
    Ok(delivered)
}

/// The first held message matching `pick`, firing `timer`'s timer (with time stopped, a leader
/// sends only when its heartbeat timer is fired) until one is there.
pub async fn next_held<D: Driver>(
    d: &mut D,
    what: Text,
    timer: NodeId,
    pick: impl Fn(&HeldMessage) -> bool,
) -> Result<HeldMessage, Failure> {
    for attempt in 0..20 {
        if let Some(m) = held(d, &pick).await?.into_iter().next() {
            return Ok(m);
        }
        if attempt % 3 == 2 {
            d.admin(AdminCommand::FireTimer { node: timer }).await?;
        }
        d.sleep(100).await;
    }
    Err(say(format!("{} never left", what.en), format!("{} nunca salió", what.es)))
}

/// Drops every held message (e.g. those of a server that just crashed).
pub async fn drop_all<D: Driver>(d: &mut D) -> Result<(), Failure> {
    for m in held(d, |_| true).await? {
        // A message may have left meanwhile; that is fine.
        let _ = d.admin(AdminCommand::DropMessage { id: m.id }).await;
    }
    Ok(())
}

/// Is this message a vote or pre-vote request or answer?
pub fn is_vote(m: &HeldMessage) -> bool {
    matches!(
        m.kind,
        MessageKind::PreVote
            | MessageKind::PreVoteResponse
            | MessageKind::RequestVote
            | MessageKind::VoteResponse
    )
}

/// The one value every reachable server's store shows for `key` (None if they differ or lack it).
pub fn agreed_value(status: &ClusterStatus, key: &str) -> Option<String> {
    let mut values = status
        .nodes
        .iter()
        .filter_map(|n| n.status.as_ref())
        .map(|s| s.kv.iter().flatten().find(|(k, _)| k == key).map(|(_, v)| v.clone()));
    let first = values.next()??;
    values.all(|v| v.as_deref() == Some(first.as_str())).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_names_are_unique_and_titled_in_both_languages() {
        let mut names: Vec<&str> = CATALOG.iter().map(|l| l.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len());
        assert!(CATALOG.iter().all(|l| !l.title.0.is_empty() && !l.title.1.is_empty()));
        for name in [
            "replication",
            "leader-crash",
            "split-vote",
            "restart-catch-up",
            "partitioned-leader",
            "figure-8",
            "log-repair",
            "snapshot",
            "stale-read",
            "pre-vote",
            "leader-transfer",
        ] {
            assert!(find(name).is_some(), "{name} is in the catalog");
        }
    }
}
