//! Observation events in words, in English and Spanish — for the simulator's trace, the node's
//! logs and the page's timeline, which must say the same thing.

use serde::{Deserialize, Serialize};

use crate::event::{Event, LossReason, MessageSummary, RoleReason};
use crate::raft::{NodeId, Role, VoteRefusal};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Es,
}

fn role(role: Role, lang: Lang) -> &'static str {
    match (role, lang) {
        (Role::Follower, Lang::En) => "follower",
        (Role::PreCandidate, Lang::En) => "pre-candidate",
        (Role::Candidate, Lang::En) => "candidate",
        (Role::Leader, Lang::En) => "leader",
        (Role::Follower, Lang::Es) => "seguidor",
        (Role::PreCandidate, Lang::Es) => "precandidato",
        (Role::Candidate, Lang::Es) => "candidato",
        (Role::Leader, Lang::Es) => "líder",
    }
}

/// The name of a role in `lang`.
pub fn role_name(r: Role, lang: Lang) -> &'static str {
    role(r, lang)
}

fn refusal(r: &VoteRefusal, lang: Lang) -> String {
    match (r, lang) {
        (VoteRefusal::StaleTerm { voter_term }, Lang::En) => {
            format!("its term is older than ours ({voter_term})")
        }
        (VoteRefusal::StaleTerm { voter_term }, Lang::Es) => {
            format!("su término es anterior al nuestro ({voter_term})")
        }
        (VoteRefusal::AlreadyVoted { voted_for }, Lang::En) => {
            format!("already voted for node {voted_for} in this term")
        }
        (VoteRefusal::AlreadyVoted { voted_for }, Lang::Es) => {
            format!("ya votó al nodo {voted_for} en este término")
        }
        (VoteRefusal::LogNotUpToDate { voter_last_index, voter_last_term }, Lang::En) => {
            format!("our log is more up-to-date (last entry {voter_last_index}, term {voter_last_term})")
        }
        (VoteRefusal::LogNotUpToDate { voter_last_index, voter_last_term }, Lang::Es) => format!(
            "nuestro log está más al día (última entrada {voter_last_index}, término {voter_last_term})"
        ),
        (VoteRefusal::LeaderActive { leader }, Lang::En) => format!("node {leader} is a live leader"),
        (VoteRefusal::LeaderActive { leader }, Lang::Es) => format!("el nodo {leader} es un líder activo"),
        (VoteRefusal::NotAVoter, Lang::En) => "its disk was not let into the cluster (empty, or lost)".into(),
        (VoteRefusal::NotAVoter, Lang::Es) => {
            "su disco no fue admitido en el clúster (vacío, o perdido)".into()
        }
        (VoteRefusal::NotAMember, Lang::En) => "the candidate was removed from the cluster".into(),
        (VoteRefusal::NotAMember, Lang::Es) => "el candidato fue retirado del clúster".into(),
    }
}

/// Why a message was lost, in words.
pub fn loss(reason: LossReason, lang: Lang) -> &'static str {
    match (reason, lang) {
        (LossReason::Partition, Lang::En) => "the link is cut",
        (LossReason::Partition, Lang::Es) => "el enlace está cortado",
        (LossReason::RandomLoss, Lang::En) => "random loss",
        (LossReason::RandomLoss, Lang::Es) => "pérdida aleatoria",
        (LossReason::Unreachable, Lang::En) => "the receiver is unreachable",
        (LossReason::Unreachable, Lang::Es) => "el destinatario no está accesible",
        (LossReason::Dropped, Lang::En) => "dropped by hand",
        (LossReason::Dropped, Lang::Es) => "descartado a mano",
        (LossReason::Overflow, Lang::En) => "the sender's queue is full",
        (LossReason::Overflow, Lang::Es) => "la cola del emisor está llena",
    }
}

fn reason(r: &RoleReason, lang: Lang) -> String {
    match (r, lang) {
        (RoleReason::Started, Lang::En) => "started".into(),
        (RoleReason::Started, Lang::Es) => "arrancó".into(),
        (RoleReason::ElectionTimeout, Lang::En) => "election timeout".into(),
        (RoleReason::ElectionTimeout, Lang::Es) => "venció el temporizador de elección".into(),
        (RoleReason::PreVoteWon, Lang::En) => "won the pre-vote".into(),
        (RoleReason::PreVoteWon, Lang::Es) => "ganó la prevotación".into(),
        (RoleReason::ElectionWon { votes }, Lang::En) => format!("won with {votes} votes"),
        (RoleReason::ElectionWon { votes }, Lang::Es) => format!("ganó con {votes} votos"),
        (RoleReason::ElectionLost, Lang::En) => "lost the election".into(),
        (RoleReason::ElectionLost, Lang::Es) => "perdió la elección".into(),
        (RoleReason::HigherTerm { from }, Lang::En) => format!("saw a higher term from node {from}"),
        (RoleReason::HigherTerm { from }, Lang::Es) => format!("vio un término mayor del nodo {from}"),
        (RoleReason::LeaderDiscovered { leader }, Lang::En) => format!("heard from leader {leader}"),
        (RoleReason::LeaderDiscovered { leader }, Lang::Es) => format!("recibió al líder {leader}"),
        (RoleReason::CheckQuorumFailed, Lang::En) => "heard from no majority (check-quorum)".into(),
        (RoleReason::CheckQuorumFailed, Lang::Es) => "no oyó a una mayoría (check-quorum)".into(),
        (RoleReason::TimeoutNow { from }, Lang::En) => format!("asked to take over by node {from}"),
        (RoleReason::TimeoutNow { from }, Lang::Es) => format!("el nodo {from} le cedió el liderazgo"),
        (RoleReason::Reported, Lang::En) => "as the node reports".into(),
        (RoleReason::Reported, Lang::Es) => "según informa el nodo".into(),
        (RoleReason::Removed { leader }, Lang::En) => {
            format!("leader {leader} says it was removed from the cluster")
        }
        (RoleReason::Removed { leader }, Lang::Es) => {
            format!("el líder {leader} dice que fue retirado del clúster")
        }
    }
}

impl Event {
    /// The event in English, without its subject ("became leader of term 3 …").
    pub fn describe(&self) -> String {
        self.describe_in(Lang::En)
    }

    pub fn describe_in(&self, lang: Lang) -> String {
        let es = lang == Lang::Es;
        match self {
            Event::RoleChanged { role: r, term, leader, reason: why } => {
                let leader = match (leader, es) {
                    (Some(l), false) if *r == Role::Follower => format!(", leader {l}"),
                    (Some(l), true) if *r == Role::Follower => format!(", líder {l}"),
                    _ => String::new(),
                };
                if es {
                    format!("pasa a {} en el término {term}{leader} ({})", role(*r, lang), reason(why, lang))
                } else {
                    format!("became {} in term {term}{leader} ({})", role(*r, lang), reason(why, lang))
                }
            }
            Event::ElectionTimerReset { deadline, timeout } => {
                if es {
                    format!("temporizador de elección: {timeout} ms (vence en t={deadline})")
                } else {
                    format!("election timer set to {timeout} ms (fires at t={deadline})")
                }
            }
            Event::MessageSent { id, to, term, message, delay } => {
                let kind = message.kind();
                let extra = match message {
                    MessageSummary::AppendEntries { entries, prev_log_index, .. } if *entries > 0 => {
                        let (first, last) = (prev_log_index + 1, prev_log_index + *entries as u64);
                        if es {
                            format!(" (entradas {first}–{last})")
                        } else {
                            format!(" (entries {first}–{last})")
                        }
                    }
                    MessageSummary::InstallSnapshot { offset, bytes, done, .. } => {
                        let (end, last) = (offset + bytes, if *done { "; last" } else { "" });
                        if es {
                            format!(" (bytes {offset}–{end}{})", if *done { "; último" } else { "" })
                        } else {
                            format!(" (bytes {offset}–{end}{last})")
                        }
                    }
                    MessageSummary::SnapshotResponse { index, received, done } => match (done, es) {
                        (true, false) => format!(" (has everything up to {index})"),
                        (true, true) => format!(" (tiene todo hasta {index})"),
                        (false, false) => format!(" ({received} bytes of the snapshot up to {index})"),
                        (false, true) => format!(" ({received} bytes de la instantánea hasta {index})"),
                    },
                    MessageSummary::AppendResponse { .. } | MessageSummary::VoteResponse { .. } => {
                        match (message.ok(), es) {
                            (true, false) => " (yes)".to_string(),
                            (true, true) => " (sí)".to_string(),
                            (false, _) => " (no)".to_string(),
                        }
                    }
                    _ => String::new(),
                };
                let after = if *delay > 0 {
                    if es { format!(", llega en {delay} ms") } else { format!(", arrives in {delay} ms") }
                } else {
                    String::new()
                };
                // The simulator does not number messages (id 0).
                let tag = if *id == 0 { String::new() } else { format!(" #{id}") };
                if es {
                    format!("envía {}{tag} al nodo {to}, término {term}{extra}{after}", kind.name())
                } else {
                    format!("sends {}{tag} to node {to} in term {term}{extra}{after}", kind.name())
                }
            }
            Event::MessageLost { from, id, to, reason } => {
                let why = loss(*reason, lang);
                if es {
                    format!("el mensaje #{id} del nodo {from} al nodo {to} se perdió: {why}")
                } else {
                    format!("message #{id} from node {from} to node {to} was lost: {why}")
                }
            }
            Event::MessageStepped { id, to, .. } => {
                if es {
                    format!("un paso entrega el mensaje #{id} al nodo {to}")
                } else {
                    format!("a step delivers message #{id} to node {to}")
                }
            }
            Event::ClockStopped => {
                if es {
                    "su reloj se detiene: ningún temporizador vence y sus mensajes esperan".into()
                } else {
                    "its clock stopped: no timer fires and its messages wait".into()
                }
            }
            Event::ClockStarted => {
                if es {
                    "su reloj vuelve a correr".into()
                } else {
                    "its clock runs again".into()
                }
            }
            Event::ClockAdvanced { by } => {
                if es {
                    format!("su reloj avanza {by} ms hasta el próximo temporizador")
                } else {
                    format!("its clock jumped {by} ms to the next timer")
                }
            }
            Event::Alarm { alarm } => {
                let nodes = alarm.nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
                let index = alarm.index.map_or(String::new(), |i| format!(", index {i}"));
                if es {
                    let index = alarm.index.map_or(String::new(), |i| format!(", posición {i}"));
                    format!(
                        "ALARMA — se violó {} (nodos {nodes}, término {}{index}): {}",
                        alarm.property.name_es(),
                        alarm.term,
                        alarm.detail_es.as_ref().unwrap_or(&alarm.detail)
                    )
                } else {
                    format!(
                        "ALARM — {} broken (nodes {nodes}, term {}{index}): {}",
                        alarm.property.name(),
                        alarm.term,
                        alarm.detail
                    )
                }
            }
            Event::VoteGranted { candidate, term, pre_vote } => match (es, pre_vote) {
                (false, false) => format!("votes for node {candidate} in term {term}"),
                (false, true) => format!("grants a pre-vote to node {candidate} for term {term}"),
                (true, false) => format!("vota al nodo {candidate} en el término {term}"),
                (true, true) => format!("concede la prevotación al nodo {candidate} para el término {term}"),
            },
            Event::VoteRefused { candidate, term, pre_vote, refusal: r } => {
                let what = match (es, pre_vote) {
                    (false, false) => "vote",
                    (false, true) => "pre-vote",
                    (true, false) => "voto",
                    (true, true) => "prevoto",
                };
                if es {
                    format!("niega su {what} al nodo {candidate} en el término {term}: {}", refusal(r, lang))
                } else {
                    format!("refused its {what} to node {candidate} in term {term}: {}", refusal(r, lang))
                }
            }
            Event::VoteCounted { voter, granted, granted_total, needed, pre_vote, .. } => {
                let kind = if *pre_vote {
                    if es { "prevoto" } else { "pre-vote" }
                } else if es {
                    "voto"
                } else {
                    "vote"
                };
                let answer = match (granted, es) {
                    (true, false) => "yes",
                    (false, false) => "no",
                    (true, true) => "sí",
                    (false, true) => "no",
                };
                if es {
                    format!(
                        "recibe {kind} {answer} del nodo {voter} ({granted_total} de {needed} necesarios)"
                    )
                } else {
                    format!("got {kind} {answer} from node {voter} ({granted_total} of {needed} needed)")
                }
            }
            Event::EntriesAppended { entries } => {
                let (first, last) =
                    (entries.first().map_or(0, |e| e.index), entries.last().map_or(0, |e| e.index));
                let text = entries.iter().map(|e| &*e.text).take(3).collect::<Vec<_>>().join(", ");
                let more = if entries.len() > 3 { ", …" } else { "" };
                if es {
                    format!("añade las entradas {first}–{last} a su log: {text}{more}")
                } else {
                    format!("appended entries {first}–{last}: {text}{more}")
                }
            }
            Event::LogTruncated { from } => {
                if es {
                    format!("borra las entradas en conflicto desde la {from}")
                } else {
                    format!("removed conflicting entries from {from} on")
                }
            }
            Event::AppendRefused { leader, prev_log_index, prev_log_term, hint } => {
                if es {
                    format!(
                        "rechaza AppendEntries del líder {leader}: no tiene la entrada {prev_log_index} del término {prev_log_term} (pista: {})",
                        hint.index
                    )
                } else {
                    format!(
                        "refused AppendEntries from leader {leader}: it lacks entry {prev_log_index} of term {prev_log_term} (hint: {})",
                        hint.index
                    )
                }
            }
            Event::AppendAccepted { follower, match_index, next_index } => {
                if es {
                    format!("el nodo {follower} coincide hasta {match_index} (siguiente {next_index})")
                } else {
                    format!("node {follower} matches up to {match_index} (next {next_index})")
                }
            }
            Event::AppendRejected { follower, next_index } => {
                if es {
                    format!("el nodo {follower} diverge: reintenta desde {next_index}")
                } else {
                    format!("node {follower} diverges: retrying from {next_index}")
                }
            }
            Event::CommitAdvanced { from, to, term } => {
                if es {
                    format!("confirma (commit) hasta la entrada {to} (antes {from}), término {term}")
                } else {
                    format!("committed up to {to} (was {from}) in term {term}")
                }
            }
            Event::Applied { index } => {
                if es {
                    format!("aplicó hasta la entrada {index}")
                } else {
                    format!("applied up to {index}")
                }
            }
            Event::SnapshotTaken { index, term } => {
                if es {
                    format!("tomó una instantánea en {index} (término {term}) y compactó su log")
                } else {
                    format!("took a snapshot at {index} (term {term}) and compacted its log")
                }
            }
            Event::MembershipChanged { voters, learners, index } => {
                let list =
                    |ids: &[NodeId]| ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ");
                match (es, learners.is_empty()) {
                    (true, true) => format!("configuración en {index}: votan {}", list(voters)),
                    (true, false) => format!(
                        "configuración en {index}: votan {}; aprende sin voto {}",
                        list(voters),
                        list(learners)
                    ),
                    (false, true) => format!("configuration at {index}: voters {}", list(voters)),
                    (false, false) => {
                        format!(
                            "configuration at {index}: voters {}; learning without a vote {}",
                            list(voters),
                            list(learners)
                        )
                    }
                }
            }
            Event::SnapshotSent { to, index } => {
                if es {
                    format!("envía una instantánea hasta {index} al nodo {to}")
                } else {
                    format!("sends a snapshot up to {index} to node {to}")
                }
            }
            Event::SnapshotInstalled { index, term, leader } => {
                if es {
                    format!("instaló la instantánea del líder {leader} hasta {index} (término {term})")
                } else {
                    format!("installed leader {leader}'s snapshot up to {index} (term {term})")
                }
            }
            Event::ReadIndexReady { read_id, index } => {
                if es {
                    format!("lectura {read_id}: se servirá al aplicar {index}")
                } else {
                    format!("read {read_id} may be served once {index} is applied")
                }
            }
            Event::ReadIndexFailed { read_id, reason } => {
                if es {
                    format!("lectura {read_id} fallida: {}", read_failure_es(reason))
                } else {
                    format!("read {read_id} failed: {reason}")
                }
            }
            Event::ReadServed { index, consistency, .. } => {
                if es {
                    format!("sirvió una lectura {consistency} en el índice {index}")
                } else {
                    format!("served a {consistency} read at index {index}")
                }
            }
            Event::DiskLost { node } => {
                if es {
                    format!(
                        "el nodo {node} volvió con el disco vacío: olvidó sus votos y entradas, y ya no cuenta \
                         (retírelo con remove-server {node} y añada uno con add-server)"
                    )
                } else {
                    format!(
                        "node {node} came back on an empty disk: it forgot its votes and entries and no longer \
                         counts (remove-server {node}, then add-server)"
                    )
                }
            }
            Event::Admitted => {
                if es {
                    "fue admitido en el clúster como aprendiz".to_string()
                } else {
                    "was let into the cluster as a learner".to_string()
                }
            }
            Event::TransferStarted { to } => {
                if es {
                    format!("cede el liderazgo al nodo {to}")
                } else {
                    format!("hands leadership to node {to}")
                }
            }
            Event::TransferAborted { to } => {
                if es {
                    format!("abandona la cesión al nodo {to}")
                } else {
                    format!("gave up handing leadership to node {to}")
                }
            }
            Event::Recovered { term, voted_for, snapshot_index, last_index } => {
                let vote = voted_for.map_or("-".to_string(), |v| v.to_string());
                if es {
                    format!(
                        "recuperado del disco: término {term}, voto {vote}, instantánea {snapshot_index}, última entrada {last_index}"
                    )
                } else {
                    format!(
                        "recovered from disk: term {term}, vote {vote}, snapshot {snapshot_index}, last entry {last_index}"
                    )
                }
            }
            // The problem is the student's program's, in English as Consenso found it.
            Event::NodeProblem { problem, count } => match lang {
                Lang::En => format!("the node's program went wrong ({count} so far): {problem}"),
                Lang::Es => format!("el programa del nodo falló ({count} hasta ahora): {problem}"),
            },
            Event::Fault { description, description_es } => match (lang, description_es) {
                (Lang::Es, Some(es)) => es.clone(),
                _ => description.clone(),
            },
        }
    }
}

/// What a safety property promises, in words a class can read under an alarm that says it broke.
pub fn property_rule(property: crate::event::Property, lang: Lang) -> &'static str {
    use crate::event::Property as P;
    let es = lang == Lang::Es;
    match property {
        P::ElectionSafety if es => "en cada término hay como mucho un líder",
        P::ElectionSafety => "there is at most one leader in each term",
        P::LeaderAppendOnly if es => "un líder nunca borra ni cambia entradas de su log",
        P::LeaderAppendOnly => "a leader never deletes or changes entries of its log",
        P::LogMatching if es => "dos logs con una entrada del mismo índice y término son iguales hasta ella",
        P::LogMatching => "two logs with an entry of the same index and term are identical up to it",
        P::LeaderCompleteness if es => {
            "una entrada confirmada está en el log de todo líder de un término posterior"
        }
        P::LeaderCompleteness => "a committed entry is in the log of every leader of a later term",
        P::StateMachineSafety if es => {
            "ningún par de servidores aplica entradas distintas en el mismo índice"
        }
        P::StateMachineSafety => "no two servers apply different entries at the same index",
        P::ExactlyOnce if es => "ninguna escritura de un cliente tiene efecto dos veces",
        P::ExactlyOnce => "no client write takes effect twice",
        P::Linearizability if es => {
            "las operaciones de los clientes tienen un orden legal que respeta el tiempo real"
        }
        P::Linearizability => "the clients' operations have a legal order that respects real time",
        P::LiveSessions if es => "una sesión activa no se da por olvidada",
        P::LiveSessions => "a live session is never treated as forgotten",
        P::Liveness if es => "cuando los fallos terminan, el clúster vuelve a confirmar entradas",
        P::Liveness => "once faults end, the cluster commits again",
    }
}

/// What a deliberate defect leaves out, in Spanish (`Bug::explanation` is the English).
pub fn bug_explanation(bug: crate::raft::Bug, lang: Lang) -> &'static str {
    use crate::raft::Bug as B;
    if lang == Lang::En {
        return bug.explanation();
    }
    match bug {
        B::CommitOldTerm => "un líder solo confirma entradas de su término contando réplicas (Figura 8)",
        B::VoteWithoutLogCheck => "el voto solo va a un candidato cuyo log está al menos tan al día (§5.4.1)",
        B::ForgetVote => "el voto de un servidor debe estar en disco antes de concederse (Figura 2)",
        B::StaleRead => "una lectura linealizable debe confirmarla un líder vigente (§6.4)",
        B::NoDedup => "una escritura reintentada debe aplicarse exactamente una vez (tesis §6.3)",
        B::ChangeBeforeCommit => {
            "un líder nuevo cambia la configuración solo tras confirmar una entrada de su término (§4.1)"
        }
        B::VoteOnEmptyDisk => {
            "un servidor que perdió su disco olvidó votos y entradas: no vota hasta que lo vuelvan a añadir"
        }
        B::NoBacktrack => {
            "un AppendEntries rechazado hace que el líder retroceda hasta que los logs coincidan (§5.3)"
        }
        B::SnapshotWithoutSessions => {
            "un snapshot guarda toda la máquina de estados, sesiones de clientes incluidas (tesis §6.3)"
        }
        B::RetryWithoutSession => {
            "una escritura reintentada conserva su sesión, para que el clúster la aplique como mucho una vez (§6.3)"
        }
    }
}

/// Why a read failed, in Spanish: the event carries the core's English words (`ReadError`).
fn read_failure_es(reason: &str) -> String {
    use crate::raft::ReadError;
    let known = [
        (ReadError::NoLeader, "no se conoce ningún líder que confirme la lectura"),
        (ReadError::LeadershipLost, "el liderazgo cambió mientras la lectura esperaba"),
        (ReadError::Unconfirmed, "el líder no confirmó la lectura a tiempo"),
    ];
    known
        .iter()
        .find(|(e, _)| e.to_string() == reason)
        .map_or_else(|| reason.to_string(), |(_, es)| es.to_string())
}
