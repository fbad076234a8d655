//! The page's words, in English and Spanish. Event sentences come from `shared::event_text`,
//! so the page, the node's logs and the simulator's trace say the same thing.

pub use shared::event_text::Lang;
use shared::protocol::{ErrorKind, ProcessState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    Tagline,
    Connecting,
    ConnectedTo,
    Reconnecting,
    Leader,
    NoLeader,
    Term,
    Freeze,
    Live,
    FrozenAt,
    Presentation,
    Cluster,
    VotedFor,
    Commit,
    Applied,
    Partitioned,
    MessagesPerSecond,
    ShowingSample,
    Legend,
    Client,
    Key,
    Value,
    Expected,
    ExpectedAbsent,
    Put,
    Get,
    Delete,
    Cas,
    Linearizable,
    Stale,
    LeaderRead,
    ServedBy,
    AtIndex,
    Retries,
    Waiting,
    Admin,
    ViewOnly,
    TokenPlaceholder,
    UseToken,
    ForgetToken,
    SelectNode,
    Crash,
    Restart,
    Pause,
    Resume,
    MakeLeader,
    Isolate,
    Partition,
    PartitionHelp,
    BlockMessages,
    Block,
    Heal,
    DropRate,
    Delay,
    TimeScale,
    AllNodes,
    Logs,
    Snapshot,
    StateMachine,
    Truncated,
    Events,
    Numbers,
    WritesPerSecond,
    LatencyP50,
    CommitsPerSecond,
    NoEvents,
    FilterRoles,
    FilterVotes,
    FilterReplication,
    FilterCommits,
    FilterSnapshots,
    FilterReads,
    FilterFaults,
    Node,
    EarlierEntries,
    LegendCommitted,
    LegendUncommitted,
    LegendApplied,
    LegendMatch,
    LegendNext,
    Memory,
    Unsupervised,
}

pub fn t(lang: Lang, key: T) -> &'static str {
    let es = lang == Lang::Es;
    macro_rules! w {
        ($en:expr, $es:expr) => {
            if es { $es } else { $en }
        };
    }
    match key {
        T::Tagline => w!("a Raft cluster you can watch and break", "un clúster Raft que puedes ver y romper"),
        T::Connecting => w!("connecting…", "conectando…"),
        T::ConnectedTo => w!("connected to", "conectado a"),
        T::Reconnecting => w!("connection lost — reconnecting", "conexión perdida — reconectando"),
        T::Leader => w!("leader", "líder"),
        T::NoLeader => w!("no leader", "sin líder"),
        T::Term => w!("term", "término"),
        T::Freeze => w!("Freeze", "Congelar"),
        T::Live => w!("Back to live", "Volver al directo"),
        T::FrozenAt => w!("frozen, showing", "congelado, mostrando"),
        T::Presentation => w!("Presentation", "Presentación"),
        T::Cluster => w!("Cluster", "Clúster"),
        T::VotedFor => w!("voted for", "votó a"),
        T::Commit => w!("commit", "commit"),
        T::Applied => w!("applied", "aplicado"),
        T::Partitioned => w!("partitioned", "particionado"),
        T::MessagesPerSecond => w!("messages/s", "mensajes/s"),
        T::ShowingSample => w!("showing a sample", "se muestra una muestra"),
        T::Legend => w!("Messages", "Mensajes"),
        T::Client => w!("Client", "Cliente"),
        T::Key => w!("key", "clave"),
        T::Value => w!("value", "valor"),
        T::Expected => w!("expected (for CAS)", "esperado (para CAS)"),
        T::ExpectedAbsent => w!("empty = key must be absent", "vacío = la clave no debe existir"),
        T::Put => w!("Put", "Escribir"),
        T::Get => w!("Get", "Leer"),
        T::Delete => w!("Delete", "Borrar"),
        T::Cas => w!("Compare-and-swap", "Comparar e intercambiar"),
        T::Linearizable => {
            w!("linearizable (ReadIndex, any node)", "linealizable (ReadIndex, cualquier nodo)")
        }
        T::Stale => w!("stale (a follower's local state)", "obsoleta (estado local de un seguidor)"),
        T::LeaderRead => w!("leader", "líder"),
        T::ServedBy => w!("answered by node", "respondió el nodo"),
        T::AtIndex => w!("at log index", "en el índice"),
        T::Retries => w!("retries", "reintentos"),
        T::Waiting => w!("waiting…", "esperando…"),
        T::Admin => w!("Break things", "Romper cosas"),
        T::ViewOnly => w!(
            "View only. Open the URL the cluster printed (with ?token=…) or enter the token to crash, pause and partition nodes.",
            "Solo lectura. Abre la URL que imprimió el clúster (con ?token=…) o introduce el token para tumbar, pausar y particionar nodos."
        ),
        T::TokenPlaceholder => w!("admin token", "token de administración"),
        T::UseToken => w!("Use token", "Usar token"),
        T::ForgetToken => w!("Forget token", "Olvidar token"),
        T::SelectNode => w!(
            "Click a node to act on it (right-click for a menu).",
            "Haz clic en un nodo para actuar sobre él (clic derecho: menú)."
        ),
        T::Crash => w!("Crash", "Tumbar"),
        T::Restart => w!("Restart", "Reiniciar"),
        T::Pause => w!("Pause", "Pausar"),
        T::Resume => w!("Resume", "Reanudar"),
        T::MakeLeader => w!("Make leader", "Hacer líder"),
        T::Isolate => w!("Isolate", "Aislar"),
        T::Partition => w!("Partition", "Particionar"),
        T::PartitionHelp => w!(
            "Tick the nodes of one side, then partition: they lose contact with the rest.",
            "Marca los nodos de un lado y particiona: pierden el contacto con el resto."
        ),
        T::BlockMessages => w!("One-way: lose messages from", "En un sentido: perder mensajes de"),
        T::Block => w!("Block", "Bloquear"),
        T::Heal => w!("Heal network", "Curar la red"),
        T::DropRate => w!("message loss", "pérdida de mensajes"),
        T::Delay => w!("delay", "retardo"),
        T::TimeScale => w!("slow motion", "cámara lenta"),
        T::AllNodes => w!("all nodes", "todos los nodos"),
        T::Logs => w!("Logs", "Logs"),
        T::Snapshot => w!("snapshot", "instantánea"),
        T::StateMachine => w!("State machine", "Máquina de estados"),
        T::Truncated => w!("(first keys only)", "(solo las primeras claves)"),
        T::Events => w!("Events", "Eventos"),
        T::Numbers => w!("Numbers", "Cifras"),
        T::WritesPerSecond => w!("writes/s", "escrituras/s"),
        T::LatencyP50 => w!("write latency p50 (ms)", "latencia de escritura p50 (ms)"),
        T::CommitsPerSecond => w!("entries committed/s", "entradas confirmadas/s"),
        T::NoEvents => w!("No events yet.", "Aún no hay eventos."),
        T::FilterRoles => w!("roles", "roles"),
        T::FilterVotes => w!("votes", "votos"),
        T::FilterReplication => w!("replication", "replicación"),
        T::FilterCommits => w!("commits", "commits"),
        T::FilterSnapshots => w!("snapshots", "instantáneas"),
        T::FilterReads => w!("reads", "lecturas"),
        T::FilterFaults => w!("faults", "fallos"),
        T::Node => w!("node", "nodo"),
        T::EarlierEntries => {
            w!("earlier entries, kept on the servers only", "entradas anteriores, solo en los servidores")
        }
        T::LegendCommitted => w!(" committed ", " confirmada "),
        T::LegendUncommitted => w!(" not yet committed ", " aún sin confirmar "),
        T::LegendApplied => w!(" applied up to here ", " aplicada hasta aquí "),
        T::LegendMatch => w!(" match index ", " índice de coincidencia "),
        T::LegendNext => w!(" next index (the leader's view) ", " siguiente índice (según el líder) "),
        T::Memory => w!("memory", "memoria"),
        T::Unsupervised => w!(
            "Not started by `consenso cluster`: crash, pause and restart are not available.",
            "No lo arrancó `consenso cluster`: tumbar, pausar y reiniciar no están disponibles."
        ),
    }
}

pub fn process(lang: Lang, state: ProcessState) -> &'static str {
    let es = lang == Lang::Es;
    match state {
        ProcessState::Up => {
            if es {
                "en marcha"
            } else {
                "up"
            }
        }
        ProcessState::Paused => {
            if es {
                "en pausa"
            } else {
                "paused"
            }
        }
        ProcessState::Crashed => {
            if es {
                "caído"
            } else {
                "crashed"
            }
        }
        ProcessState::Unreachable => {
            if es {
                "inalcanzable"
            } else {
                "unreachable"
            }
        }
    }
}

/// An error the cluster returned, in plain words, with the detail after.
pub fn error(lang: Lang, kind: ErrorKind, detail: &str) -> String {
    let es = lang == Lang::Es;
    let plain = match kind {
        ErrorKind::NoLeader => {
            if es {
                "Ahora mismo no hay líder: probablemente hay una elección en curso. Reinténtalo en un momento."
            } else {
                "There is no leader right now: an election is probably under way. Try again in a moment."
            }
        }
        ErrorKind::Timeout => {
            if es {
                "El clúster no respondió a tiempo. Una escritura puede haberse aplicado o no."
            } else {
                "The cluster did not answer in time. A write may or may not have been applied."
            }
        }
        ErrorKind::Unauthorized => {
            if es {
                "Esto necesita el token de administración."
            } else {
                "This needs the admin token."
            }
        }
        ErrorKind::BadRequest => {
            if es {
                "La petición no se entendió."
            } else {
                "The request was not understood."
            }
        }
        ErrorKind::FrameTooLarge => {
            if es {
                "La petición es demasiado grande."
            } else {
                "The request is too large."
            }
        }
        ErrorKind::VersionMismatch => {
            if es {
                "Versiones incompatibles de la página y el proxy."
            } else {
                "The page and the proxy speak different versions."
            }
        }
        ErrorKind::Unavailable => {
            if es {
                "No se pudo contactar con ningún servidor."
            } else {
                "No server could be reached."
            }
        }
        ErrorKind::NotSupported => {
            if es {
                "Este despliegue no permite esa acción."
            } else {
                "This deployment cannot do that."
            }
        }
        ErrorKind::StaleSession => {
            if es {
                "La sesión ya aplicó una escritura posterior."
            } else {
                "The session already applied a later write."
            }
        }
    };
    format!("{plain} ({detail})")
}
