//! Lessons about elections (§5.2, §9.6 of the dissertation, §6.2, §3.10).

use super::{
    Driver, Failure, Text, deliver_all, drop_all, fresh_cluster, held, is_vote, leader, live, role_of, say,
    term_of, view, wait_for,
};
use crate::protocol::{AdminCommand, ClusterStatus, HeldMessage};
use crate::raft::{MessageKind, NodeId, Role, Term};

/// Steps taken at most while an election is shown move by move.
const ELECTION_STEPS: usize = 120;

/// How far each live server's clock is from its next timer (ms of its own clock).
pub(super) fn time_to_timers(status: &ClusterStatus) -> Vec<(NodeId, u64)> {
    live(status)
        .into_iter()
        .filter_map(|id| {
            let s = view(status, id)?.status.as_ref()?;
            Some((id, s.clock.next_deadline.saturating_sub(s.now)))
        })
        .collect()
}

/// Advances every clock just far enough that every live server's next timer fires at once.
pub(super) async fn fire_all_timers<D: Driver>(d: &mut D) -> Result<(), Failure> {
    let status = d.status().await?;
    let ms = time_to_timers(&status).into_iter().map(|(_, ms)| ms).max().unwrap_or(0);
    d.admin(AdminCommand::Advance { node: None, ms }).await?;
    Ok(())
}

/// A follower other than `not`, the highest id (a stable, explainable choice).
pub(super) fn a_follower(status: &ClusterStatus, not: NodeId) -> Result<NodeId, Failure> {
    live(status)
        .into_iter()
        .filter(|id| *id != not)
        .max()
        .ok_or_else(|| say("no follower is up", "no hay ningún seguidor activo"))
}

/// Steps one move at a time until a leader other than `old` leads a term above `term`,
/// captioning the moments worth a word: the first pre-candidate, the first candidate.
async fn step_through_election<D: Driver>(
    d: &mut D,
    old: NodeId,
    term: Term,
) -> Result<(NodeId, Term), Failure> {
    let (mut said_pre, mut said_candidate) = (false, false);
    for _ in 0..ELECTION_STEPS {
        d.admin(AdminCommand::Step { count: 1 }).await?;
        let status = d.status().await?;
        if let Some((l, t)) = leader(&status).filter(|(l, t)| *l != old && *t > term) {
            return Ok((l, t));
        }
        for n in &status.nodes {
            match n.role {
                Some(Role::PreCandidate) if !said_pre => {
                    said_pre = true;
                    d.caption(say(
                        format!(
                            "Node {}'s election timer ran out first. It becomes a pre-candidate: before raising its \
                             term it asks the others whether they would vote for it (pre-vote). Watch the \
                             diamonds travel, one step at a time.",
                            n.id
                        ),
                        format!(
                            "El temporizador del nodo {} venció el primero. Pasa a precandidato: antes de subir su \
                             término pregunta a los demás si le votarían (prevoto). Mira viajar los rombos, un \
                             paso cada vez.",
                            n.id
                        ),
                    ))
                    .await;
                }
                Some(Role::Candidate) if !said_candidate => {
                    said_candidate = true;
                    let t = n.term.unwrap_or(0);
                    d.caption(say(
                        format!(
                            "Node {} won the pre-vote. Now it is a candidate: it moves to term {t}, votes for \
                             itself and sends RequestVote. Each server votes at most once per term; the votes \
                             arrive one by one.",
                            n.id
                        ),
                        format!(
                            "El nodo {} ganó el prevoto. Ahora es candidato: pasa al término {t}, se vota a sí \
                             mismo y envía RequestVote. Cada servidor vota como mucho una vez por término; los \
                             votos llegan de uno en uno.",
                            n.id
                        ),
                    ))
                    .await;
                }
                _ => {}
            }
        }
    }
    Err(say(
        format!("no new leader after {ELECTION_STEPS} steps"),
        format!("ningún líder nuevo tras {ELECTION_STEPS} pasos"),
    ))
}

pub async fn leader_crash<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (old, term) = fresh_cluster(d).await?;
    d.write("lesson", "v1").await?;
    d.caption(say(
        format!(
            "Node {old} leads term {term}. Its heartbeats reset every follower's election timer (the ring \
             around each server) before it runs out."
        ),
        format!(
            "El nodo {old} lidera el término {term}. Sus latidos reinician el temporizador de elección de cada \
             seguidor (el anillo alrededor de cada servidor) antes de que se agote."
        ),
    ))
    .await;
    d.admin(AdminCommand::StopTime).await?;
    d.admin(AdminCommand::Crash { node: old }).await?;
    drop_all(d).await?;
    d.caption(say(
        format!(
            "Time is stopped. Node {old} was killed (SIGKILL): no more heartbeats. Each follower's timer was \
             drawn at random, so one of them will run out first. Step by step now."
        ),
        format!(
            "El tiempo está detenido. El nodo {old} murió (SIGKILL): ya no hay latidos. El temporizador de cada \
             seguidor se sorteó al azar, así que uno vencerá antes. Ahora, paso a paso."
        ),
    ))
    .await;
    let (new, new_term) = step_through_election(d, old, term).await?;
    let status = d.status().await?;
    let votes = view(&status, new).and_then(|n| n.status.as_ref()).map_or(0, |s| s.replica.raft.voters.len());
    d.caption(say(
        format!(
            "Node {new} got votes from a majority of the {votes} servers: it leads term {new_term}. Its first \
             act is a no-op entry of its own term, and heartbeats that stop the other timers."
        ),
        format!(
            "El nodo {new} obtuvo los votos de una mayoría de los {votes} servidores: lidera el término \
             {new_term}. Lo primero que hace es añadir una entrada vacía de su término y enviar latidos que \
             detienen los demás temporizadores."
        ),
    ))
    .await;
    d.admin(AdminCommand::StartTime).await?;
    d.write("lesson", "v2").await?;
    d.admin(AdminCommand::Restart { node: old }).await?;
    wait_for(
        d,
        say(format!("node {old} to rejoin as a follower"), format!("que el nodo {old} vuelva como seguidor")),
        30.0,
        |s| {
            let leader_commit = view(s, new)?.commit?;
            let n = view(s, old)?;
            (n.role == Some(Role::Follower) && n.term >= Some(new_term) && n.commit? >= leader_commit)
                .then_some(())
        },
    )
    .await?;
    d.caption(say(
        format!("Node {old} restarted from its disk and rejoined as a follower of term {new_term}: nothing written was lost."),
        format!("El nodo {old} arrancó de nuevo desde su disco y volvió como seguidor del término {new_term}: no se perdió nada escrito."),
    ))
    .await;
    Ok(say(
        format!("node {old} crashed in term {term}; node {new} was elected in term {new_term}"),
        format!(
            "el nodo {old} cayó en el término {term}; el nodo {new} fue elegido en el término {new_term}"
        ),
    ))
}

pub async fn split_vote<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (old, term) = fresh_cluster(d).await?;
    d.admin(AdminCommand::StopTime).await?;
    d.admin(AdminCommand::Crash { node: old }).await?;
    drop_all(d).await?;
    d.caption(say(
        format!(
            "Node {old}, the leader of term {term}, is gone and time is stopped. Normally one follower's timer \
             runs out well before the others. Here we let every follower's timer run out at the same moment."
        ),
        format!(
            "El nodo {old}, líder del término {term}, ha caído y el tiempo está detenido. Normalmente el \
             temporizador de un seguidor vence mucho antes que los demás. Aquí hacemos que venzan todos a la vez."
        ),
    ))
    .await;
    fire_all_timers(d).await?;
    let followers = wait_for(
        d,
        say("every follower to campaign", "que todos los seguidores hagan campaña"),
        10.0,
        |s| {
            let up = live(s);
            up.iter()
                .all(|id| matches!(role_of(s, *id), Some(Role::PreCandidate | Role::Candidate)))
                .then_some(up)
        },
    )
    .await?;
    d.caption(say(
        "Every follower is now a pre-candidate and asks the others for a pre-vote. A pre-vote changes nobody's \
         term, so they grant each other theirs.",
        "Todos los seguidores son ahora precandidatos y piden el prevoto a los demás. Un prevoto no cambia el \
         término de nadie, así que se lo conceden entre ellos.",
    ))
    .await;
    deliver_all(d, 400, is_vote).await?;
    let split = term + 1;
    wait_for(
        d,
        say(format!("term {split} without a leader"), format!("el término {split} sin líder")),
        10.0,
        |s| {
            followers
                .iter()
                .all(|id| term_of(s, *id) == Some(split) && role_of(s, *id) != Some(Role::Leader))
                .then_some(())
        },
    )
    .await?;
    d.caption(say(
        format!(
            "Term {split}: every candidate voted for itself and refused the others — each server votes once per \
             term. Nobody has a majority: a split vote. Nobody leads term {split}."
        ),
        format!(
            "Término {split}: cada candidato se votó a sí mismo y negó su voto a los demás — cada servidor vota \
             una vez por término. Nadie tiene mayoría: voto dividido. Nadie lidera el término {split}."
        ),
    ))
    .await;
    d.admin(AdminCommand::StartTime).await?;
    let (new, new_term) =
        wait_for(d, say("a leader of a later term", "un líder de un término posterior"), 30.0, |s| {
            leader(s).filter(|(_, t)| *t > split)
        })
        .await?;
    d.caption(say(
        format!(
            "Time runs again. Each timer was drawn at random again, so one candidate timed out first, asked in \
             term {new_term} and won before the others woke: node {new} leads. Randomness ends split votes."
        ),
        format!(
            "El tiempo corre de nuevo. Cada temporizador se sorteó otra vez, así que un candidato venció antes, \
             pidió el voto en el término {new_term} y ganó antes de que despertaran los demás: lidera el nodo {new}. \
             El azar acaba con los votos divididos."
        ),
    ))
    .await;
    d.admin(AdminCommand::Restart { node: old }).await?;
    Ok(say(
        format!("term {split} had no leader; node {new} won term {new_term}"),
        format!("el término {split} no tuvo líder; el nodo {new} ganó el término {new_term}"),
    ))
}

pub async fn pre_vote<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (boss, term) = fresh_cluster(d).await?;
    let status = d.status().await?;
    let loner = a_follower(&status, boss)?;
    d.admin(AdminCommand::Partition { groups: vec![vec![loner]] }).await?;
    d.caption(say(
        format!(
            "Node {loner} is cut off. It hears no heartbeat, so its election timer runs out again and again. \
             Without pre-vote it would raise its term each time."
        ),
        format!(
            "El nodo {loner} está aislado. No oye latidos, así que su temporizador vence una y otra vez. Sin \
             prevoto subiría su término cada vez."
        ),
    ))
    .await;
    let timeouts = 4;
    let scale = status.time_scale.max(1.0);
    let mut campaigned = false;
    for _ in 0..timeouts * 6 {
        d.sleep((50.0 * scale) as u64).await;
        let s = d.status().await?;
        campaigned |= role_of(&s, loner) == Some(Role::PreCandidate);
        if term_of(&s, loner).is_some_and(|t| t != term) {
            return Err(say(
                format!("node {loner} raised its term while cut off"),
                format!("el nodo {loner} subió su término estando aislado"),
            ));
        }
    }
    if !campaigned {
        return Err(say(
            format!("node {loner} never asked for a pre-vote"),
            format!("el nodo {loner} nunca pidió el prevoto"),
        ));
    }
    d.caption(say(
        format!(
            "With pre-vote, node {loner} first asks whether it could win. Nobody hears it, so it never moves past \
             term {term}."
        ),
        format!(
            "Con prevoto, el nodo {loner} pregunta primero si podría ganar. Nadie le oye, así que no pasa del \
             término {term}."
        ),
    ))
    .await;
    d.admin(AdminCommand::Heal).await?;
    wait_for(
        d,
        say(
            format!("node {loner} to follow node {boss}"),
            format!("que el nodo {loner} siga al nodo {boss}"),
        ),
        20.0,
        |s| {
            let n = view(s, loner)?;
            (n.role == Some(Role::Follower) && n.leader == Some(boss)).then_some(())
        },
    )
    .await?;
    let status = d.status().await?;
    if leader(&status) != Some((boss, term)) {
        return Err(say(
            "the leader changed when the cut-off server came back",
            "el líder cambió cuando volvió el servidor aislado",
        ));
    }
    d.caption(say(
        format!("Node {loner} is back. Its term is still {term}, so node {boss} keeps leading: nothing was disrupted."),
        format!("El nodo {loner} ha vuelto. Su término sigue siendo {term}, así que el nodo {boss} sigue liderando: no se alteró nada."),
    ))
    .await;
    Ok(say(
        format!("node {loner} stayed in term {term} while cut off; node {boss} kept leading"),
        format!("el nodo {loner} siguió en el término {term} aislado; el nodo {boss} siguió liderando"),
    ))
}

pub async fn partitioned_leader<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (old, term) = fresh_cluster(d).await?;
    d.write("lesson", "v1").await?;
    // Stopped, then cut off: the old leader takes a write it can never commit, and stays leader
    // (its check-quorum timer waits with its clock) while the majority elects another.
    d.admin(AdminCommand::StopTime).await?;
    d.admin(AdminCommand::Partition { groups: vec![vec![old]] }).await?;
    d.write_via(old, "lesson", "stranded").await?;
    let stranded =
        wait_for(d, say("the cut-off leader to append", "que el líder aislado añada"), 10.0, |s| {
            let commit = view(s, old)?.commit.unwrap_or(0);
            super::last_index(s, old).filter(|l| *l > commit)
        })
        .await?;
    d.caption(say(
        format!(
            "Node {old}, the leader of term {term}, is cut off from everyone, and time is stopped. A client's write \
             reached it: it appended lesson = stranded at index {stranded}, but no majority can acknowledge it. Next \
             lets one of the others' timers run out."
        ),
        format!(
            "El nodo {old}, líder del término {term}, queda aislado de todos, y el tiempo está detenido. Le llegó \
             la escritura de un cliente: añadió lesson = stranded en la posición {stranded}, pero ninguna mayoría \
             puede reconocerla. «Siguiente» deja vencer el temporizador de uno de los demás."
        ),
    ))
    .await;
    let status = d.status().await?;
    let challenger = a_follower(&status, old)?;
    // Only the majority's clocks move: each other voter to just before its own timer, so that
    // it no longer trusts the old leader (its lease is shorter than any timeout) yet does not
    // campaign; the challenger's timer runs out. The old leader's clock stays where it was.
    for voter in live(&status).into_iter().filter(|v| *v != old && *v != challenger) {
        let Some(s) = view(&status, voter).and_then(|n| n.status.as_ref()) else { continue };
        let ms = s.replica.raft.election_deadline.saturating_sub(1).saturating_sub(s.now);
        if ms > 0 {
            d.admin(AdminCommand::Advance { node: Some(voter), ms }).await?;
        }
    }
    d.admin(AdminCommand::FireTimer { node: challenger }).await?;
    deliver_all(d, 80, move |m| m.from != old && m.to != old).await?;
    let (new, new_term) =
        wait_for(d, say("a leader on the majority side", "un líder en el lado de la mayoría"), 10.0, |s| {
            s.nodes
                .iter()
                .find(|n| n.id != old && n.role == Some(Role::Leader) && n.term > Some(term))
                .map(|n| (n.id, n.term.unwrap_or(0)))
        })
        .await?;
    if role_of(&d.status().await?, old) != Some(Role::Leader) {
        return Err(say(
            format!("node {old} stepped down before the two leaders were shown"),
            format!("el nodo {old} dejó de liderar antes de mostrar los dos líderes"),
        ));
    }
    d.caption(say(
        format!(
            "Two leaders at once: node {old} still leads term {term} (it has heard nothing to tell it otherwise), \
             and the majority elected node {new} in term {new_term}. Only node {new} can commit — a majority \
             acknowledges its entries; node {old}'s write stays uncommitted, and its client is never told it \
             succeeded."
        ),
        format!(
            "Dos líderes a la vez: el nodo {old} sigue liderando el término {term} (nada le ha dicho lo contrario), \
             y la mayoría eligió al nodo {new} en el término {new_term}. Solo el nodo {new} puede confirmar — una \
             mayoría reconoce sus entradas; la escritura del nodo {old} queda sin confirmar, y a su cliente nunca \
             se le dice que salió bien."
        ),
    ))
    .await;
    d.admin(AdminCommand::StartTime).await?;
    d.write("lesson", "v2").await?;
    wait_for(
        d,
        say(format!("node {old} to step down"), format!("que el nodo {old} deje de liderar")),
        20.0,
        |s| (role_of(s, old) != Some(Role::Leader)).then_some(()),
    )
    .await?;
    d.caption(say(
        format!(
            "Node {old} could commit nothing on its own. After an election timeout without hearing from a \
             majority it stepped down by itself (check-quorum), so clients stop trusting it."
        ),
        format!(
            "El nodo {old} no podía confirmar nada solo. Tras un tiempo de elección sin oír a una mayoría dejó de \
             liderar por sí mismo (check-quorum), y los clientes dejan de confiar en él."
        ),
    ))
    .await;
    d.admin(AdminCommand::Heal).await?;
    wait_for(
        d,
        say(format!("node {old} to catch up"), format!("que el nodo {old} se ponga al día")),
        30.0,
        |s| {
            let (l, _) = leader(s)?;
            let leader_commit = view(s, l)?.commit?;
            let n = view(s, old)?;
            (n.term >= Some(new_term)
                && n.commit? >= leader_commit
                && super::agreed_value(s, "lesson").as_deref() == Some("v2"))
            .then_some(())
        },
    )
    .await?;
    d.caption(say(
        format!(
            "The network healed. Node {old} saw the higher term, became a follower and caught up: its stranded \
             entry at index {stranded} was replaced, and every server has lesson = v2."
        ),
        format!(
            "La red se curó. El nodo {old} vio el término mayor, pasó a seguidor y se puso al día: su entrada \
             varada en la posición {stranded} fue sustituida, y todos tienen lesson = v2."
        ),
    ))
    .await;
    Ok(say(
        format!("node {old} stepped down; node {new} led term {new_term}"),
        format!("el nodo {old} dejó de liderar; el nodo {new} lideró el término {new_term}"),
    ))
}

pub async fn leader_transfer<D: Driver>(d: &mut D) -> Result<Text, Failure> {
    let (old, term) = fresh_cluster(d).await?;
    d.write("lesson", "v1").await?;
    let status = d.status().await?;
    let heir = a_follower(&status, old)?;
    d.caption(say(
        format!(
            "Node {old} leads term {term}. To hand over (for maintenance, say), it makes sure node {heir} has its \
             whole log, stops taking writes, and sends it TimeoutNow. Time stops now, so that we can watch it."
        ),
        format!(
            "El nodo {old} lidera el término {term}. Para ceder el liderazgo (por mantenimiento, por ejemplo), se \
             asegura de que el nodo {heir} tenga todo su log, deja de aceptar escrituras y le envía TimeoutNow. \
             Ahora se detiene el tiempo, para verlo."
        ),
    ))
    .await;
    d.admin(AdminCommand::StopTime).await?;
    d.admin(AdminCommand::TransferLeadership { to: heir }).await?;
    // Whatever the heir still lacks goes first; then the TimeoutNow waits at the leader.
    let is_timeout_now =
        move |m: &HeldMessage| m.kind == MessageKind::TimeoutNow && m.from == old && m.to == heir;
    let mut timeout_now = None;
    for _ in 0..40 {
        if let Some(m) = held(d, is_timeout_now).await?.into_iter().next() {
            timeout_now = Some(m);
            break;
        }
        let catching_up = held(d, |m| m.kind.is_routine() && (m.to == heir || m.from == heir)).await?;
        match catching_up.first() {
            Some(m) => drop(d.admin(AdminCommand::DeliverMessage { id: m.id }).await?),
            None => d.sleep(150).await,
        }
    }
    let timeout_now = timeout_now.ok_or_else(|| {
        say(
            format!("node {old} never sent TimeoutNow to node {heir}"),
            format!("el nodo {old} no envió TimeoutNow al nodo {heir}"),
        )
    })?;
    d.caption(say(
        format!(
            "The message waiting between node {old} and node {heir} is TimeoutNow: \"start an election now\". \
             Node {heir} is still a follower of term {term}. Next delivers it."
        ),
        format!(
            "El mensaje que espera entre el nodo {old} y el nodo {heir} es TimeoutNow: «empieza una elección ya». \
             El nodo {heir} sigue siendo seguidor del término {term}. «Siguiente» lo entrega."
        ),
    ))
    .await;
    // The handover must happen under the caption, not before it.
    let status = d.status().await?;
    if term_of(&status, heir) != Some(term) || role_of(&status, heir) != Some(Role::Follower) {
        return Err(say(
            format!("node {heir} left term {term} before its TimeoutNow was shown"),
            format!("el nodo {heir} dejó el término {term} antes de que se mostrara su TimeoutNow"),
        ));
    }
    d.admin(AdminCommand::DeliverMessage { id: timeout_now.id }).await?;
    let new_term = wait_for(
        d,
        say(format!("node {heir} to campaign"), format!("que el nodo {heir} se presente")),
        20.0,
        |s| (role_of(s, heir) == Some(Role::Candidate)).then(|| term_of(s, heir)).flatten(),
    )
    .await?;
    d.caption(say(
        format!(
            "Node {heir} started an election at once, in term {new_term}, without waiting for its timer. Its \
             RequestVotes carry a mark: the voters grant them even though they heard from a leader a moment ago, \
             because that leader asked for this. Next delivers the votes."
        ),
        format!(
            "El nodo {heir} empezó una elección enseguida, en el término {new_term}, sin esperar a su \
             temporizador. Sus RequestVote llevan una marca: los votantes las conceden aunque acaban de oír a un \
             líder, porque fue ese líder quien lo pidió. «Siguiente» entrega los votos."
        ),
    ))
    .await;
    deliver_all(d, 40, is_vote).await?;
    d.admin(AdminCommand::StartTime).await?;
    wait_for(d, say(format!("node {heir} to lead"), format!("que lidere el nodo {heir}")), 20.0, |s| {
        leader(s).filter(|(l, _)| *l == heir).map(|(_, t)| t)
    })
    .await?;
    d.write("lesson", "v2").await?;
    d.caption(say(
        format!("Node {heir} leads term {new_term} and takes writes; node {old} follows it. No timeout was waited for."),
        format!(
            "El nodo {heir} lidera el término {new_term} y acepta escrituras; el nodo {old} lo sigue. No se esperó \
             ningún temporizador."
        ),
    ))
    .await;
    Ok(say(
        format!("node {old} handed leadership to node {heir} (term {new_term})"),
        format!("el nodo {old} cedió el liderazgo al nodo {heir} (término {new_term})"),
    ))
}
