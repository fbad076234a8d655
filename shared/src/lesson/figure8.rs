//! Figure 8 of the Raft paper, rebuilt on five real servers by choosing which messages arrive.
//!
//! (a) Leader a (term t) appends X at index x; only b receives it.
//! (b) a crashes; e wins the next term with c's and d's votes and appends its no-op at x,
//!     which nobody receives; e crashes.
//! (c) a restarts and wins a later term with b, c and d; it replicates X to c (so a majority
//!     stores X) but its own no-op reaches nobody but b. X is of an old term: a correct leader
//!     does not commit it by counting replicas (§5.4.2). With `--bug commit-old-term` it does.
//! (d) a crashes; e restarts and wins with c's and d's votes (its last term is newer than X's)
//!     and overwrites X everywhere. Harmless if X was never committed; with the defect, a
//!     committed entry is lost and the live invariant monitor raises the alarm.

use super::elections::fire_all_timers;
use super::{
    Driver, Failure, Text, deliver_all, drop_all, fresh_cluster, held, is_vote, last_index, leader, live,
    role_of, say, view, wait_for,
};
use crate::protocol::{AdminCommand, ClusterStatus, HeldMessage, ProcessState};
use crate::raft::{Index, MessageKind, NodeId, Role, Term};

/// Rounds of "fire the timer, deliver the votes" before giving up on an election.
const CAMPAIGNS: usize = 6;

/// The leader's view of how far `follower` matches its log.
fn matched(status: &ClusterStatus, leader: NodeId, follower: NodeId) -> Option<Index> {
    let s = view(status, leader)?.status.as_ref()?;
    s.replica.raft.progress.iter().find(|p| p.id == follower).map(|p| p.match_index)
}

/// Makes `node` win an election by firing only its timer and delivering only its votes.
async fn elect<D: Driver>(d: &mut D, node: NodeId) -> Result<Term, Failure> {
    for _ in 0..CAMPAIGNS {
        d.admin(AdminCommand::FireTimer { node }).await?;
        deliver_all(d, 40, |m| is_vote(m) && (m.from == node || m.to == node)).await?;
        let status = d.status().await?;
        if role_of(&status, node) == Some(Role::Leader) {
            return Ok(view(&status, node).and_then(|n| n.term).unwrap_or(0));
        }
    }
    Err(say(
        format!("node {node} did not win an election"),
        format!("el nodo {node} no ganó ninguna elección"),
    ))
}

async fn wait_up<D: Driver>(d: &mut D, node: NodeId) -> Result<(), Failure> {
    wait_for(d, say(format!("node {node} to be up"), format!("que el nodo {node} arranque")), 20.0, |s| {
        let n = view(s, node)?;
        (n.state == ProcessState::Up && n.role.is_some()).then_some(())
    })
    .await
}

pub async fn figure_8<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (a, t) = fresh_cluster(d).await?;
    let status = d.status().await?;
    let others: Vec<NodeId> = status.nodes.iter().map(|n| n.id).filter(|id| *id != a).collect();
    let [b, c, dd, e] = others[..4] else {
        return Err(say("Figure 8 needs five servers", "la figura 8 necesita cinco servidores"));
    };
    d.admin(AdminCommand::BatchSize { entries: Some(1) }).await?;
    let base = d.write("figure-8", "before").await?;
    wait_for(d, say("every server to apply", "que todos apliquen"), 20.0, |s| {
        live(s).iter().all(|id| view(s, *id).and_then(|n| n.applied).is_some_and(|i| i >= base)).then_some(())
    })
    .await?;
    d.caption(say(
        format!(
            "Figure 8 of the Raft paper, on five real servers: a={a}, b={b}, c={c}, d={dd}, e={e}. Node a leads \
             term {t}. Time is stopped and we choose which messages arrive. Each AppendEntries carries one entry."
        ),
        format!(
            "La figura 8 del artículo de Raft, en cinco servidores reales: a={a}, b={b}, c={c}, d={dd}, e={e}. El \
             nodo a lidera el término {t}. El tiempo está detenido y elegimos qué mensajes llegan. Cada \
             AppendEntries lleva una entrada."
        ),
    ))
    .await;
    d.admin(AdminCommand::StopTime).await?;
    deliver_all(d, 60, |_| true).await?;

    // (a) X reaches b only.
    d.admin(AdminCommand::Partition { groups: vec![vec![a, b], vec![c, dd, e]] }).await?;
    let x = last_index(&d.status().await?, a).unwrap_or(base) + 1;
    d.write_via(a, "figure-8", "X").await?;
    wait_for(d, say("a to append X", "que a añada X"), 10.0, |s| last_index(s, a).filter(|l| *l >= x))
        .await?;
    deliver_all(d, 10, |m| (m.from == a && m.to == b) || (m.from == b && m.to == a)).await?;
    wait_for(d, say("b to store X", "que b guarde X"), 10.0, |s| last_index(s, b).filter(|l| *l >= x))
        .await?;
    d.caption(say(
        format!("(a) Leader a appended X (term {t}) at index {x}. Only b received it: not a majority, not committed."),
        format!("(a) El líder a añadió X (término {t}) en la posición {x}. Solo b la recibió: no es mayoría, no se confirma."),
    ))
    .await;

    // (b) e wins the next term without X, appends its no-op at x, and crashes.
    d.admin(AdminCommand::Crash { node: a }).await?;
    drop_all(d).await?;
    fire_all_timers(d).await?;
    wait_for(d, say("e to campaign", "que e haga campaña"), 10.0, |s| {
        (role_of(s, e) == Some(Role::PreCandidate)).then_some(())
    })
    .await?;
    deliver_all(d, 10, |m| m.from == e && m.kind == MessageKind::PreVote).await?;
    deliver_all(d, 10, |m| m.to == e && m.kind == MessageKind::PreVoteResponse).await?;
    deliver_all(d, 10, |m| m.from == e && m.kind == MessageKind::RequestVote).await?;
    deliver_all(d, 10, |m| m.to == e && m.kind == MessageKind::VoteResponse).await?;
    let te = wait_for(d, say("e to lead", "que e lidere"), 10.0, |s| {
        (role_of(s, e) == Some(Role::Leader)).then(|| view(s, e).and_then(|n| n.term).unwrap_or(0))
    })
    .await?;
    wait_for(d, say("e's no-op", "la entrada vacía de e"), 10.0, |s| last_index(s, e).filter(|l| *l >= x))
        .await?;
    d.admin(AdminCommand::Crash { node: e }).await?;
    drop_all(d).await?;
    d.caption(say(
        format!(
            "(b) Node a crashed. Node e won term {te} with the votes of c and d, and appended its own entry at \
             index {x} (term {te}). Before anyone received it, e crashed too."
        ),
        format!(
            "(b) El nodo a cayó. El nodo e ganó el término {te} con los votos de c y d, y añadió su propia \
             entrada en la posición {x} (término {te}). Antes de que nadie la recibiera, e cayó también."
        ),
    ))
    .await;

    // (c) a comes back, wins, and brings X to a majority without its own entry.
    d.admin(AdminCommand::Heal).await?;
    d.admin(AdminCommand::Restart { node: a }).await?;
    wait_up(d, a).await?;
    let ta = elect(d, a).await?;
    deliver_all(d, 6, |m| (m.from == a && m.to == b) || (m.from == b && m.to == a)).await?;
    for _ in 0..12 {
        let status = d.status().await?;
        let c_has_x = last_index(&status, c).is_some_and(|l| l >= x);
        if c_has_x && matched(&status, a, c).is_some_and(|m| m >= x) {
            break;
        }
        let next = held(d, |m| (m.from == a && m.to == c) || (m.from == c && m.to == a)).await?;
        let Some(m) = next.first() else {
            d.sleep(200).await;
            continue;
        };
        if c_has_x && carries_beyond(m, x) {
            break;
        }
        d.admin(AdminCommand::DeliverMessage { id: m.id }).await?;
    }
    let status = wait_for(d, say("a to learn that c stores X", "que a sepa que c guarda X"), 10.0, |s| {
        matched(s, a, c).filter(|m| *m >= x).map(|_| s.clone())
    })
    .await?;
    let committed_x = view(&status, a).and_then(|n| n.commit).is_some_and(|commit| commit >= x);
    d.caption(if committed_x {
        say(
            format!(
                "(c) Node a leads term {ta}. X is now on a majority (a, b, c) — and this leader COMMITTED it by \
                 counting replicas, although X is from term {t}. That is the defect: watch what happens next."
            ),
            format!(
                "(c) El nodo a lidera el término {ta}. X está ya en una mayoría (a, b, c) — y este líder la \
                 CONFIRMÓ contando réplicas, aunque X es del término {t}. Ese es el defecto: mira lo que pasa."
            ),
        )
    } else {
        say(
            format!(
                "(c) Node a leads term {ta}. X is now on a majority (a, b, c), but it is from term {t}: a leader \
                 commits only entries of its own term by counting replicas. X stays uncommitted."
            ),
            format!(
                "(c) El nodo a lidera el término {ta}. X está ya en una mayoría (a, b, c), pero es del término \
                 {t}: un líder solo confirma contando réplicas entradas de su propio término. X sigue sin confirmar."
            ),
        )
    })
    .await;

    // (d) a crashes; e returns and wins with c and d, whose last term (t) is older than e's.
    d.admin(AdminCommand::Crash { node: a }).await?;
    drop_all(d).await?;
    d.admin(AdminCommand::Restart { node: e }).await?;
    wait_up(d, e).await?;
    // Said as it happens: the caption of (c) must not stay on screen over a crashed a.
    d.caption(say(
        "(d) Node a crashed again, and node e is back. Next lets e stand for election.",
        "(d) El nodo a volvió a caer, y el nodo e está de vuelta. «Siguiente» deja que e se presente.",
    ))
    .await;
    // c heard from a moments ago and would refuse to help depose it: let its timer run out.
    d.admin(AdminCommand::FireTimer { node: c }).await?;
    drop_all(d).await?;
    let te2 = elect(d, e).await?;
    d.caption(say(
        format!(
            "(d) Node e won term {te2} with c's and d's votes: its last entry \
             (term {te}) is newer than X (term {t}). Now e makes every log agree with its own — X is replaced."
        ),
        format!(
            "(d) El nodo e ganó el término {te2} con los votos de c y d: su \
             última entrada (término {te}) es más reciente que X (término {t}). Ahora e hace que todos los logs \
             coincidan con el suyo: X se sustituye."
        ),
    ))
    .await;
    d.admin(AdminCommand::StartTime).await?;
    d.admin(AdminCommand::Restart { node: a }).await?;
    wait_for(d, say("every log to agree", "que todos los logs coincidan"), 30.0, |s| {
        let (l, _) = leader(s)?;
        let commit = view(s, l)?.commit?;
        (commit > x
            && s.nodes
                .iter()
                .filter(|n| n.state == ProcessState::Up)
                .all(|n| n.commit.is_some_and(|c| c >= commit)))
        .then_some(())
    })
    .await?;
    d.admin(AdminCommand::BatchSize { entries: None }).await?;
    let status = d.status().await?;
    if committed_x || !status.alarms.is_empty() {
        return Err(say(
            format!("entry {x} was committed as X and then replaced: a committed entry was lost"),
            format!(
                "la entrada {x} se confirmó como X y luego se sustituyó: se perdió una entrada confirmada"
            ),
        ));
    }
    d.caption(say(
        "X was never committed, so replacing it broke no promise. Only entries of the leader's own term are committed by counting replicas; earlier ones commit with them.",
        "X nunca se confirmó, así que sustituirla no rompió ninguna promesa. Contando réplicas solo se confirman entradas del término del líder; las anteriores se confirman con ellas.",
    ))
    .await;
    Ok(say(
        format!("X (term {t}) reached a majority in term {ta}, was not committed, and was safely replaced"),
        format!(
            "X (término {t}) llegó a una mayoría en el término {ta}, no se confirmó y se sustituyó sin peligro"
        ),
    ))
}

/// Whether an AppendEntries carries entries beyond index `x`.
fn carries_beyond(m: &HeldMessage, x: Index) -> bool {
    m.message.entry_range().is_some_and(|(_, last)| last > x)
}
