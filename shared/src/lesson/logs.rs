//! Lessons about the log: replication and commitment (§5.3), catching up, repair of divergent
//! logs, snapshots (§7), and reads (§6.4).

use super::elections::a_follower;
use super::{
    Driver, Failure, Text, agreed_value, deliver_all, drop_all, fresh_cluster, last_index, live, next_held,
    say, view, wait_for,
};
use crate::event::{Consistency, MessageSummary};
use crate::protocol::{AdminCommand, ClusterStatus, HeldMessage};
use crate::raft::{Index, MessageKind, NodeId};

/// Every live server has committed and applied at least `index`.
fn all_applied(status: &ClusterStatus, index: Index) -> bool {
    live(status).iter().all(|id| view(status, *id).and_then(|n| n.applied).is_some_and(|a| a >= index))
}

pub async fn replication<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (boss, term) = fresh_cluster(d).await?;
    d.admin(AdminCommand::StopTime).await?;
    deliver_all(d, 50, |_| true).await?;
    let before = last_index(&d.status().await?, boss).unwrap_or(0);
    d.caption(say(
        format!(
            "Node {boss} leads term {term}. Time is stopped. A client writes greeting = hello; the proxy sends it \
             to the leader."
        ),
        format!(
            "El nodo {boss} lidera el término {term}. El tiempo está detenido. Un cliente escribe greeting = hello; \
             el proxy lo envía al líder."
        ),
    ))
    .await;
    d.write_via(boss, "greeting", "hello").await?;
    let index =
        wait_for(d, say("the leader to append the entry", "que el líder añada la entrada"), 10.0, |s| {
            last_index(s, boss).filter(|last| *last > before)
        })
        .await?;
    d.caption(say(
        format!(
            "The leader appended it at index {index} of its log — not committed yet (hatched). It sends \
             AppendEntries to every follower; with time stopped they wait on the way."
        ),
        format!(
            "El líder la añadió en la posición {index} de su log — aún sin confirmar (rayada). Envía AppendEntries \
             a cada seguidor; con el tiempo detenido esperan en el camino."
        ),
    ))
    .await;
    deliver_all(d, 20, |m| m.from == boss && m.kind == MessageKind::AppendEntries).await?;
    d.caption(say(
        "Each follower checks that its log matches the leader's just before the new entry, appends it, and \
         acknowledges.",
        "Cada seguidor comprueba que su log coincide con el del líder justo antes de la nueva entrada, la añade y \
         responde.",
    ))
    .await;
    deliver_all(d, 20, |m| m.to == boss && m.kind == MessageKind::AppendResponse).await?;
    wait_for(d, say("the leader to commit", "que el líder confirme"), 10.0, |s| {
        view(s, boss)?.commit.filter(|c| *c >= index)
    })
    .await?;
    d.caption(say(
        format!(
            "A majority stores entry {index}: the leader commits it, applies it and answers the client. The \
             followers learn the new commit index with the next heartbeat."
        ),
        format!(
            "Una mayoría guarda la entrada {index}: el líder la confirma, la aplica y responde al cliente. Los \
             seguidores conocen el nuevo índice confirmado con el siguiente latido."
        ),
    ))
    .await;
    d.admin(AdminCommand::StartTime).await?;
    wait_for(d, say("every server to apply it", "que todos los servidores la apliquen"), 20.0, |s| {
        (all_applied(s, index) && agreed_value(s, "greeting").as_deref() == Some("hello")).then_some(())
    })
    .await?;
    Ok(say(
        format!("entry {index} committed by node {boss} and applied by every server"),
        format!("la entrada {index} la confirmó el nodo {boss} y la aplicaron todos los servidores"),
    ))
}

pub async fn restart_catch_up<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (boss, _) = fresh_cluster(d).await?;
    let status = d.status().await?;
    let sleeper = a_follower(&status, boss)?;
    d.admin(AdminCommand::Crash { node: sleeper }).await?;
    d.caption(say(
        format!("Node {sleeper} crashed. The others go on: a majority is enough to commit."),
        format!("El nodo {sleeper} cayó. Los demás siguen: basta una mayoría para confirmar."),
    ))
    .await;
    let mut last = 0;
    for i in 1..=5 {
        last = d.write(&format!("missed-{i}"), &format!("value {i}")).await?;
    }
    d.caption(say(
        format!(
            "Five writes committed without node {sleeper}. Now it restarts from its disk, behind by those \
             entries, and time stops: we watch how the leader finds where their logs agree."
        ),
        format!(
            "Cinco escrituras confirmadas sin el nodo {sleeper}. Ahora arranca desde su disco, con esas entradas \
             de retraso, y se detiene el tiempo: veremos cómo encuentra el líder dónde coinciden los logs."
        ),
    ))
    .await;
    restart_with_time_stopped(d, sleeper).await?;
    walk_appends(d, boss, sleeper, last).await?;
    d.admin(AdminCommand::StartTime).await?;
    wait_for(
        d,
        say(format!("node {sleeper} to catch up"), format!("que el nodo {sleeper} se ponga al día")),
        30.0,
        |s| {
            let n = view(s, sleeper)?;
            (n.applied? >= last && agreed_value(s, "missed-5").as_deref() == Some("value 5")).then_some(())
        },
    )
    .await?;
    d.caption(say(
        format!("Node {sleeper} has every entry up to {last}, and applied them: it is caught up."),
        format!("El nodo {sleeper} tiene todas las entradas hasta la {last} y las aplicó: está al día."),
    ))
    .await;
    Ok(say(
        format!("node {sleeper} caught up to index {last}"),
        format!("el nodo {sleeper} se puso al día hasta la entrada {last}"),
    ))
}

/// Stops time, forgets what was held, restarts `node` from its disk and waits until it answers:
/// whatever the leader sends it next waits on screen. Its last index.
async fn restart_with_time_stopped<D: Driver>(d: &mut D, node: NodeId) -> Result<Index, Failure> {
    d.admin(AdminCommand::StopTime).await?;
    drop_all(d).await?;
    d.admin(AdminCommand::Restart { node }).await?;
    let answers = say(format!("node {node} to answer"), format!("que el nodo {node} responda"));
    wait_for(d, answers, 20.0, |s| last_index(s, node)).await
}

/// Moves of a catching-up shown one by one, at most.
const MOVES_SHOWN: usize = 4;

/// Shows the leader's AppendEntries to `follower` and its answers one move at a time, each
/// under a caption said from the held message and the follower's log, until the follower
/// acknowledges `target` (at most `MOVES_SHOWN` moves; time runs again after).
async fn walk_appends<D: Driver>(
    d: &mut D,
    leader: NodeId,
    follower: NodeId,
    target: Index,
) -> Result<(), Failure> {
    for _ in 0..MOVES_SHOWN {
        let what = say(
            format!("an AppendEntries to node {follower}"),
            format!("un AppendEntries al nodo {follower}"),
        );
        let append =
            next_held(d, what, leader, move |m| m.from == leader && m.to == follower && m.kind.is_routine())
                .await?;
        let log = d.log(follower).await;
        d.caption(append_caption(&append.message, follower, &log)).await;
        d.admin(AdminCommand::DeliverMessage { id: append.id }).await?;
        let what = say(format!("node {follower}'s answer"), format!("la respuesta del nodo {follower}"));
        let answer = next_held(d, what, leader, move |m| m.from == follower && m.to == leader).await?;
        d.caption(answer_caption(&answer.message, follower)).await;
        d.admin(AdminCommand::DeliverMessage { id: answer.id }).await?;
        // Let the statuses and logs tell what the move changed before the next caption.
        d.sleep(400).await;
        if matches!(answer.message, MessageSummary::AppendResponse { success: true, index, .. } if index >= target)
        {
            break;
        }
    }
    Ok(())
}

/// What an AppendEntries on its way to `follower`, whose log is `log`, asks — said from the
/// message itself and the follower's log, so that the caption is what the picture shows.
fn append_caption(message: &MessageSummary, follower: NodeId, log: &crate::event::LogMirror) -> Text {
    let MessageSummary::AppendEntries { prev_log_index: prev, prev_log_term: term, entries, .. } = *message
    else {
        return say("A message on its way.", "Un mensaje en camino.");
    };
    let carries = match entries {
        0 => ("no entries (a heartbeat)".to_string(), "ninguna entrada (un latido)".to_string()),
        n => (
            format!("entries {} to {}", prev + 1, prev + u64::from(n)),
            format!("las entradas {} a {}", prev + 1, prev + u64::from(n)),
        ),
    };
    let (after_en, after_es) = if prev == 0 {
        ("from the start of your log".to_string(), "desde el principio de tu log".to_string())
    } else {
        (
            format!("after your entry {prev} of term {term}"),
            format!("tras tu entrada {prev} del término {term}"),
        )
    };
    let asks = (
        format!(
            "The leader's AppendEntries to node {follower} says \"{after_en}\" and carries {}.",
            carries.0
        ),
        format!("El AppendEntries del líder al nodo {follower} dice «{after_es}» y lleva {}.", carries.1),
    );
    let has = log.last_index();
    let held_term = if prev == 0 { Some(0) } else { log.get(prev).map(|e| e.term) };
    let verdict = match held_term {
        _ if prev > has => (
            format!("Node {follower}'s log ends at {has}: it has no entry {prev}, so it must refuse."),
            format!(
                "El log del nodo {follower} acaba en la {has}: no tiene entrada {prev}, así que debe rechazarlo."
            ),
        ),
        Some(t) if t != term => (
            format!(
                "Node {follower}'s entry {prev} is of term {t}, not {term}: the logs differ there, so it must refuse."
            ),
            format!(
                "La entrada {prev} del nodo {follower} es del término {t}, no del {term}: ahí los logs difieren, así que debe rechazarlo."
            ),
        ),
        _ => (
            format!(
                "Node {follower}'s log agrees at entry {prev}: it accepts, and whatever of its own conflicts after it goes."
            ),
            format!(
                "El log del nodo {follower} coincide en la entrada {prev}: lo acepta, y lo suyo que choque después se borra."
            ),
        ),
    };
    say(format!("{} {}", asks.0, verdict.0), format!("{} {}", asks.1, verdict.1))
}

/// What `follower`'s answer to an AppendEntries says.
fn answer_caption(message: &MessageSummary, follower: NodeId) -> Text {
    match *message {
        MessageSummary::AppendResponse { success: false, last_log_index, .. } => say(
            format!(
                "Node {follower} refuses, and tells the leader its log ends at {last_log_index}. The leader steps \
                 back and tries again from there."
            ),
            format!(
                "El nodo {follower} lo rechaza, y le dice al líder que su log acaba en la {last_log_index}. El líder \
                 retrocede y vuelve a intentarlo desde ahí."
            ),
        ),
        MessageSummary::AppendResponse { success: true, index, .. } => say(
            format!("Node {follower} accepts: its log now matches the leader's up to entry {index}."),
            format!(
                "El nodo {follower} acepta: su log coincide ya con el del líder hasta la entrada {index}."
            ),
        ),
        _ => say("An answer on its way.", "Una respuesta en camino."),
    }
}

pub async fn log_repair<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (old, term) = fresh_cluster(d).await?;
    let base = d.write("repair", "base").await?;
    d.admin(AdminCommand::Partition { groups: vec![vec![old]] }).await?;
    d.write_via(old, "repair", "lost 1").await?;
    d.write_via(old, "repair", "lost 2").await?;
    wait_for(d, say("the cut-off leader to append", "que el líder aislado añada"), 10.0, |s| {
        last_index(s, old).filter(|l| *l >= base + 2)
    })
    .await?;
    let still_leads = super::role_of(&d.status().await?, old) == Some(crate::raft::Role::Leader);
    let (is_en, is_es) = if still_leads {
        (
            format!("still leader of term {term}: it does not know yet"),
            format!("aún líder del término {term}: todavía no lo sabe"),
        )
    } else {
        (
            format!("leader of term {term} until it noticed it had lost its majority"),
            format!("líder del término {term} hasta que notó que había perdido su mayoría"),
        )
    };
    d.caption(say(
        format!(
            "Node {old} ({is_en}) is cut off, yet it appended two writes at indices {} and {}. No majority will \
             ever store them.",
            base + 1,
            base + 2
        ),
        format!(
            "El nodo {old} ({is_es}) está aislado y aun así añadió dos escrituras en las posiciones {} y {}. \
             Ninguna mayoría las guardará.",
            base + 1,
            base + 2
        ),
    ))
    .await;
    let (new, new_term) = wait_for(d, say("a new leader", "un nuevo líder"), 30.0, |s| {
        s.nodes
            .iter()
            .find(|n| n.id != old && n.role == Some(crate::raft::Role::Leader) && n.term > Some(term))
            .map(|n| (n.id, n.term.unwrap_or(0)))
    })
    .await?;
    d.write("repair", "kept").await?;
    d.caption(say(
        format!(
            "The majority elected node {new} (term {new_term}), which committed different entries at the same \
             indices. Now the network heals and time stops: watch the repair message by message."
        ),
        format!(
            "La mayoría eligió al nodo {new} (término {new_term}), que confirmó otras entradas en las mismas \
             posiciones. Ahora la red se cura y el tiempo se detiene: mira la reparación mensaje a mensaje."
        ),
    ))
    .await;
    d.admin(AdminCommand::StopTime).await?;
    d.admin(AdminCommand::Heal).await?;
    let target = last_index(&d.status().await?, new).unwrap_or(0);
    walk_appends(d, new, old, target).await?;
    d.admin(AdminCommand::StartTime).await?;
    wait_for(
        d,
        say(format!("node {old}'s log to match"), format!("que el log del nodo {old} coincida")),
        30.0,
        |s| (agreed_value(s, "repair").as_deref() == Some("kept")).then_some(()),
    )
    .await?;
    let log = d.log(old).await;
    let repaired = log.get(base + 1).is_some_and(|e| e.term > term);
    if !repaired {
        return Err(say(
            format!("node {old}'s entry {} still has term {term}", base + 1),
            format!("la entrada {} del nodo {old} sigue teniendo el término {term}", base + 1),
        ));
    }
    Ok(say(
        format!("node {old}'s uncommitted entries from term {term} were replaced by node {new}'s"),
        format!(
            "las entradas sin confirmar del nodo {old} del término {term} se sustituyeron por las del nodo {new}"
        ),
    ))
}

pub async fn snapshot<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (boss, _) = fresh_cluster(d).await?;
    let status = d.status().await?;
    let sleeper = a_follower(&status, boss)?;
    d.admin(AdminCommand::Crash { node: sleeper }).await?;
    let mut last = 0;
    for i in 1..=6 {
        last = d.write(&format!("snap-{i}"), &format!("value {i}")).await?;
    }
    d.admin(AdminCommand::Snapshot { node: None }).await?;
    wait_for(d, say("the leader's snapshot", "la instantánea del líder"), 10.0, |s| {
        view(s, boss)?.snapshot_index.filter(|i| *i >= last)
    })
    .await?;
    d.caption(say(
        format!(
            "Node {sleeper} is down while six writes commit. Then every live server takes a snapshot of its store \
             at index {last} and drops the log before it: the log stays short."
        ),
        format!(
            "El nodo {sleeper} está caído mientras se confirman seis escrituras. Después, cada servidor activo toma \
             una instantánea de su almacén en la posición {last} y borra el log anterior: el log se mantiene corto."
        ),
    ))
    .await;
    // Time stops before the restart, so that the snapshot is seen on its way.
    let has = restart_with_time_stopped(d, sleeper).await?;
    let to_sleeper = move |m: &HeldMessage| m.from == boss && m.to == sleeper;
    let mut chunk = None;
    for _ in 0..MOVES_SHOWN * 2 {
        let what = say(format!("a message to node {sleeper}"), format!("un mensaje al nodo {sleeper}"));
        let m = next_held(d, what, boss, to_sleeper).await?;
        if m.kind == MessageKind::InstallSnapshot {
            chunk = Some(m);
            break;
        }
        // The leader probes first; the answer tells it how far behind node `sleeper` is.
        d.admin(AdminCommand::DeliverMessage { id: m.id }).await?;
        let what = say(format!("node {sleeper}'s answer"), format!("la respuesta del nodo {sleeper}"));
        let answer = next_held(d, what, boss, move |m| m.from == sleeper && m.to == boss).await?;
        d.admin(AdminCommand::DeliverMessage { id: answer.id }).await?;
    }
    let chunk = chunk.ok_or_else(|| {
        say(
            format!("the leader sent no InstallSnapshot to node {sleeper}"),
            format!("el líder no envió InstallSnapshot al nodo {sleeper}"),
        )
    })?;
    d.caption(say(
        format!(
            "Node {sleeper} restarted with its log ending at {has}; the leader no longer has the entries after it \
             (they are in its snapshot). So the message on its way (the big square) is InstallSnapshot: the whole \
             store as of index {last}. Next delivers it."
        ),
        format!(
            "El nodo {sleeper} arrancó con su log acabando en la {has}; el líder ya no tiene las entradas \
             siguientes (están en su instantánea). Así que el mensaje en camino (el cuadrado grande) es \
             InstallSnapshot: todo el almacén en la posición {last}. «Siguiente» lo entrega."
        ),
    ))
    .await;
    if view(&d.status().await?, sleeper).and_then(|n| n.snapshot_index).unwrap_or(0) >= last {
        return Err(say(
            format!("node {sleeper} installed the snapshot before it was shown"),
            format!("el nodo {sleeper} instaló la instantánea antes de que se mostrara"),
        ));
    }
    d.admin(AdminCommand::DeliverMessage { id: chunk.id }).await?;
    d.admin(AdminCommand::StartTime).await?;
    wait_for(
        d,
        say(
            format!("node {sleeper} to install the snapshot"),
            format!("que el nodo {sleeper} instale la instantánea"),
        ),
        30.0,
        |s| {
            let n = view(s, sleeper)?;
            (n.snapshot_index? >= last
                && n.applied? >= last
                && agreed_value(s, "snap-6").as_deref() == Some("value 6"))
            .then_some(())
        },
    )
    .await?;
    d.caption(say(
        format!(
            "Node {sleeper} replaced its state with the snapshot: its log now starts after index {last}, and it \
             goes on from there like any follower."
        ),
        format!(
            "El nodo {sleeper} sustituyó su estado por la instantánea: su log empieza ahora tras la posición \
             {last}, y sigue desde ahí como cualquier seguidor."
        ),
    ))
    .await;
    Ok(say(
        format!("node {sleeper} caught up from a snapshot at index {last}"),
        format!("el nodo {sleeper} se puso al día con una instantánea en la posición {last}"),
    ))
}

pub async fn stale_read<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (boss, _) = fresh_cluster(d).await?;
    d.write("balance", "100").await?;
    let status = d.status().await?;
    let loner = a_follower(&status, boss)?;
    wait_for(d, say("every server to apply", "que todos apliquen"), 10.0, |s| {
        (agreed_value(s, "balance").as_deref() == Some("100")).then_some(())
    })
    .await?;
    d.admin(AdminCommand::Partition { groups: vec![vec![loner]] }).await?;
    d.write("balance", "50").await?;
    d.caption(say(
        format!("balance was 100 everywhere. Node {loner} is now cut off, and balance = 50 committed without it."),
        format!("balance valía 100 en todos. El nodo {loner} está ahora aislado, y balance = 50 se confirmó sin él."),
    ))
    .await;
    let stale = d.read_via(loner, "balance", Consistency::Stale).await;
    d.caption(say(
        format!(
            "A stale read from node {loner} answers from its own state at once: {}. Fast, and \
             wrong: the world moved on without it.",
            shown(&stale)
        ),
        format!(
            "Una lectura obsoleta del nodo {loner} responde enseguida con su propio estado: {}. Rápido, y mal: el \
             mundo siguió sin él.",
            shown_es(&stale)
        ),
    ))
    .await;
    let linearizable = d.read_via(loner, "balance", Consistency::Linearizable).await;
    d.caption(say(
        format!(
            "A linearizable read asks the leader to confirm, with a majority, the latest commit index (ReadIndex). \
             Node {loner} cannot reach a leader, so it refuses: {}.",
            shown(&linearizable)
        ),
        format!(
            "Una lectura linealizable pide al líder que confirme, con una mayoría, el último índice confirmado \
             (ReadIndex). El nodo {loner} no llega a ningún líder, así que se niega: {}.",
            shown_es(&linearizable)
        ),
    ))
    .await;
    d.admin(AdminCommand::Heal).await?;
    if linearizable.as_ref().is_ok_and(|v| v.as_deref() == Some("100")) {
        return Err(say(
            format!("a linearizable read from node {loner} returned the old value 100"),
            format!("una lectura linealizable del nodo {loner} devolvió el valor antiguo 100"),
        ));
    }
    if stale.as_ref().is_ok_and(|v| v.as_deref() != Some("100")) {
        return Err(say(
            format!("the stale read from node {loner} did not show the old value: {}", shown(&stale)),
            format!("la lectura obsoleta del nodo {loner} no mostró el valor antiguo: {}", shown_es(&stale)),
        ));
    }
    wait_for(d, say("balance = 50 everywhere", "balance = 50 en todos"), 20.0, |s| {
        (agreed_value(s, "balance").as_deref() == Some("50")).then_some(())
    })
    .await?;
    Ok(say(
        format!("node {loner} read 100 stale and refused the linearizable read"),
        format!("el nodo {loner} leyó 100 obsoleto y rechazó la lectura linealizable"),
    ))
}

fn shown(read: &Result<Option<String>, super::ReadRefused>) -> String {
    match read {
        Ok(Some(v)) => format!("\"{v}\""),
        Ok(None) => "(absent)".into(),
        Err(e) => e.to_string(),
    }
}

/// `shown`, in Spanish: the refusals a cut-off server gives, in words; any other in the
/// server's own (English) words, said to be so.
fn shown_es(read: &Result<Option<String>, super::ReadRefused>) -> String {
    use crate::replica::ReplyError;
    match read {
        Ok(Some(v)) => format!("\"{v}\""),
        Ok(None) => "(no existe)".into(),
        Err(super::ReadRefused::NoAnswer(node)) => format!("el nodo {node} no respondió"),
        Err(super::ReadRefused::Refused(ReplyError::NoLeader | ReplyError::NotLeader { leader: None })) => {
            "no hay líder al que preguntar".into()
        }
        Err(super::ReadRefused::Refused(ReplyError::NotLeader { leader: Some(l) })) => {
            format!("no es el líder (cree que lo es el nodo {l})")
        }
        Err(super::ReadRefused::Refused(e)) => format!("rechazada (en palabras del servidor: {e})"),
    }
}
