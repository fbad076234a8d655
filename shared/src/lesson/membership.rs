//! Changing the cluster's members while it serves (dissertation chapter 4).

use super::{Driver, Failure, agreed_value, fresh_cluster, leader, say, view, wait_for};
use crate::lesson::Text;
use crate::protocol::{AdminCommand, ClusterStatus};
use crate::raft::NodeId;

/// A majority of `voters`.
fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

fn voters(s: &ClusterStatus) -> Vec<NodeId> {
    s.members.voters.clone()
}

/// Every voter at the leader's commit index.
fn caught_up(s: &ClusterStatus) -> Option<()> {
    let (l, _) = leader(s)?;
    let commit = s.nodes.iter().find(|n| n.id == l)?.commit?;
    s.members
        .voters
        .iter()
        .all(|v| s.nodes.iter().any(|n| n.id == *v && n.commit == Some(commit)))
        .then_some(())
}

pub async fn membership<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (old, term) = fresh_cluster(d).await?;
    d.write("lesson", "v1").await?;
    let before = voters(&d.status().await?);
    let n = before.len();
    d.caption(say(
        format!(
            "Node {old} leads term {term} with {n} voters: a majority is {}. We add a server. It starts with an \
             empty disk and joins as a learner: it receives the log, but has no vote and does not count towards \
             commits, so a newcomer far behind cannot stall the cluster.",
            majority(n)
        ),
        format!(
            "El nodo {old} lidera el término {term} con {n} votantes: la mayoría es {}. Añadimos un servidor. \
             Arranca con el disco vacío y entra como aprendiz: recibe el log, pero no vota ni cuenta para \
             confirmar, así que un recién llegado muy atrasado no puede frenar el clúster.",
            majority(n)
        ),
    ))
    .await;
    let shown = learner_stage(d, &before).await;
    // Time runs again whatever happened.
    d.admin(AdminCommand::StartTime).await?;
    let status = shown?;
    let new = *voters(&status).iter().find(|v| !before.contains(v)).expect("one voter more");
    d.write("lesson", "v2").await?;
    d.caption(say(
        format!(
            "Node {new} caught up, and the leader made it a voter with a second configuration entry: {} voters, \
             a majority of {}. One server at a time, so any old majority and any new one share a server.",
            n + 1,
            majority(n + 1)
        ),
        format!(
            "El nodo {new} se puso al día y el líder lo hizo votante con una segunda entrada de configuración: {} \
             votantes, mayoría de {}. De uno en uno, así cualquier mayoría vieja y cualquier nueva comparten un \
             servidor.",
            n + 1,
            majority(n + 1)
        ),
    ))
    .await;
    let (leading, _) = leader(&d.status().await?).ok_or_else(|| say("no leader", "no hay líder"))?;
    d.caption(say(
        format!(
            "Now we remove the leader, node {leading}. It does not remove itself: it hands leadership to the most \
             up-to-date voter first, and the new leader commits a configuration without it."
        ),
        format!(
            "Ahora quitamos al líder, el nodo {leading}. No se quita a sí mismo: primero cede el liderazgo al \
             votante más al día, y el nuevo líder confirma una configuración sin él."
        ),
    ))
    .await;
    d.admin(AdminCommand::RemoveServer { node: leading }).await?;
    let status = wait_for(
        d,
        say("a leader without the removed server", "un líder sin el servidor quitado"),
        30.0,
        |s| {
            let (l, _) = leader(s)?;
            (l != leading && !voters(s).contains(&leading) && voters(s).len() == n).then_some(())?;
            caught_up(s).map(|_| s.clone())
        },
    )
    .await?;
    let (now, now_term) = leader(&status).expect("checked above");
    d.write("lesson", "v3").await?;
    wait_for(
        d,
        say("every server to hold the last write", "que todos tengan la última escritura"),
        10.0,
        |s| agreed_value(s, "lesson").filter(|v| v == "v3"),
    )
    .await?;
    Ok(say(
        format!(
            "node {new} joined as a learner and became a voter; leader {leading} handed over to node {now} (term \
             {now_term}) and left; every write was kept"
        ),
        format!(
            "el nodo {new} entró como aprendiz y pasó a votar; el líder {leading} cedió al nodo {now} (término \
             {now_term}) y salió; no se perdió ninguna escritura"
        ),
    ))
}

/// A server added while time is stopped, so that it stays a learner (its catching up waits)
/// under its caption; the status once it votes.
async fn learner_stage<D: Driver>(d: &mut D, before: &[NodeId]) -> Result<ClusterStatus, Failure> {
    d.admin(AdminCommand::StopTime).await?;
    // Answered once the learner's configuration commits, which needs time: started, not awaited.
    d.admin_started(AdminCommand::AddServer { node: None, address: None });
    // Statuses come four times a second: wait for one that shows the newcomer.
    let status =
        wait_for(d, say("the new server in a status", "el nuevo servidor en un estado"), 20.0, |s| {
            let new = |ids: &[NodeId]| ids.iter().any(|id| !before.contains(id));
            (new(&s.members.learners) || new(&s.members.voters)).then(|| s.clone())
        })
        .await?;
    let Some(&learner) = status.members.learners.iter().find(|l| !before.contains(l)) else {
        return Err(say(
            "the new server was a voter before its learner stage could be shown",
            "el nuevo servidor votaba antes de que se pudiera mostrar su etapa de aprendiz",
        ));
    };
    let has = view(&status, learner).and_then(|v| v.last_log_index).unwrap_or(0);
    let leader_has = leader(&status).and_then(|(l, _)| view(&status, l)?.last_log_index).unwrap_or(0);
    d.caption(say(
        format!(
            "Time is stopped with node {learner} a learner: it is in the configuration, drawn apart, but has no \
             vote and is not counted. Its log ends at {has}, the leader's at {leader_has}: the leader is sending it \
             what it lacks. Next lets it catch up."
        ),
        format!(
            "El tiempo está detenido con el nodo {learner} como aprendiz: está en la configuración, dibujado \
             aparte, pero no vota ni cuenta. Su log acaba en la {has}, el del líder en la {leader_has}: el líder le \
             está enviando lo que le falta. «Siguiente» le deja ponerse al día."
        ),
    ))
    .await;
    if !d.status().await?.members.learners.contains(&learner) {
        return Err(say(
            format!("node {learner} became a voter before its caption said it was a learner"),
            format!("el nodo {learner} pasó a votar antes de que el rótulo dijera que era aprendiz"),
        ));
    }
    d.admin(AdminCommand::StartTime).await?;
    let n = before.len();
    wait_for(
        d,
        say("the new server to catch up and vote", "que el nuevo se ponga al día y vote"),
        30.0,
        |s| {
            (voters(s).len() == n + 1 && s.members.learners.is_empty()).then_some(())?;
            caught_up(s).map(|_| s.clone())
        },
    )
    .await
}
