//! The page's words, in English and Spanish. Event sentences come from `shared::event_text`,
//! so the page, the node's logs and the simulator's trace say the same thing.

pub use shared::event_text::Lang;
use shared::protocol::{AdminCommand, ClientFrame, ErrorKind, ProcessState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T {
    Tagline,
    Connecting,
    ConnectedTo,
    Reconnecting,
    SimulatedHere,
    RunSimulation,
    Replaying,
    OpenRecording,
    Play,
    PauseReplay,
    StepFrame,
    Speed,
    NextElection,
    NextCommit,
    NextFault,
    DropRecording,
    SaveHeading,
    RecordingOfTheLast,
    DiagramOfTheLast,
    DiagramBefore,
    Download,
    InWords,
    RecordToFile,
    StopRecording,
    RecordingTo,
    Leader,
    NoLeader,
    Term,
    Freeze,
    Live,
    FrozenAt,
    Presentation,
    Cluster,
    VotedFor,
    NodeNotReady,
    NodeNotReadyDetail,
    NodeBadLines,
    YourNode,
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
    AddServer,
    RemoveServer,
    Learner,
    LegendLearner,
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
    // Time
    RunTime,
    StopTime,
    Step,
    TimeRuns,
    TimeStopped,
    HeldMessages,
    Latency,
    LatencyAuto,
    NotToScale,
    TrueSpeed,
    FrozenActsLive,
    // Messages
    MessageTitle,
    Held,
    InFlight,
    Lost,
    Stepping,
    DeliverNow,
    DropIt,
    Close,
    ClickAMessage,
    // Votes and roles
    StillLeads,
    Deposed,
    Side,
    OneWayBlocked,
    // Lessons
    Lessons,
    StartLesson,
    Next,
    StopLesson,
    LessonPassed,
    LessonFailed,
    LessonWaiting,
    LessonRunning,
    LessonsAdminOnly,
    // Alarms
    Alarm,
    DeliberateDefects,
    // Legend
    LegendTitle,
    LegendFollower,
    LegendPreCandidate,
    ProxyRow,
    WithHeartbeats,
    LegendCandidate,
    LegendLeader,
    LegendTimer,
    LegendPaused,
    LegendCrashed,
    LegendUnreachable,
    LegendCutOff,
    LegendHeld,
    LegendLostMsg,
    // Help
    Shortcuts,
    KeySpace,
    CloseLesson,
    ConfirmReset,
    VotesOf,
    VotesNeeded,
    KeyRight,
    KeyNext,
    KeyEnter,
    KeyEscape,
    KeyHelp,
    KeyPresent,
    Done,
    Reset,
    Snapshot2,
    StudentsMayWrite,
    WritesClosed,
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
        T::SimulatedHere => w!("simulated in this page · seed", "simulado en esta página · semilla"),
        T::Replaying => w!("replaying", "reproduciendo"),
        T::OpenRecording => w!("Open a recording…", "Abrir una grabación…"),
        T::Play => w!("▶ Play", "▶ Reproducir"),
        T::PauseReplay => w!("❚❚ Pause", "❚❚ Pausa"),
        T::StepFrame => w!("Next event ▸", "Siguiente evento ▸"),
        T::Speed => w!("speed", "velocidad"),
        T::NextElection => w!("next election", "siguiente elección"),
        T::NextCommit => w!("next commit", "siguiente confirmación"),
        T::NextFault => w!("next fault", "siguiente fallo"),
        T::SaveHeading => w!("Save", "Guardar"),
        T::RecordingOfTheLast => w!("Recording of the last", "Grabación de los últimos"),
        T::DiagramOfTheLast => w!("Diagram of the last", "Diagrama de los últimos"),
        T::DiagramBefore => {
            w!("Diagram of the moments before this one:", "Diagrama de lo anterior a este momento:")
        }
        T::Download => w!("Download", "Descargar"),
        T::InWords => w!("in words", "en palabras"),
        T::RecordToFile => w!("Record to a file", "Grabar en un fichero"),
        T::StopRecording => w!("Stop recording", "Detener la grabación"),
        T::RecordingTo => w!("recording to", "grabando en"),
        T::DropRecording => w!(
            "Drop a recording (.rec) here to replay it",
            "Suelta aquí una grabación (.rec) para reproducirla"
        ),
        T::RunSimulation => w!(
            "No cluster answers: simulate one in this page",
            "Ningún clúster responde: simula uno en esta página"
        ),
        T::Leader => w!("leader", "líder"),
        T::NoLeader => w!("no leader", "sin líder"),
        T::Term => w!("term", "término"),
        T::Freeze => w!("Freeze", "Congelar"),
        T::Live => w!("Back to live", "Volver al directo"),
        T::FrozenAt => w!("frozen, showing", "congelado, mostrando"),
        T::Presentation => w!("Presentation", "Presentación"),
        T::Cluster => w!("Cluster", "Clúster"),
        T::VotedFor => w!("voted for", "votó a"),
        T::NodeNotReady => w!("⚠ no init_ok", "⚠ sin init_ok"),
        T::NodeNotReadyDetail => {
            w!("the node has not answered init with init_ok", "el nodo no ha respondido a init con init_ok")
        }
        T::NodeBadLines => w!("⚠ bad lines:", "⚠ líneas erróneas:"),
        T::YourNode => w!("your node:", "tu nodo:"),
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
        T::AddServer => w!("Add a server", "Añadir un servidor"),
        T::RemoveServer => w!("Remove from cluster", "Quitar del clúster"),
        T::Learner => w!("learner", "aprendiz"),
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
        T::RunTime => w!("▶ Run time", "▶ Correr el tiempo"),
        T::StopTime => w!("❚❚ Stop time", "❚❚ Parar el tiempo"),
        T::Step => w!("Step ▸", "Paso ▸"),
        T::TimeRuns => w!("time runs", "el tiempo corre"),
        T::TimeStopped => w!("TIME STOPPED", "TIEMPO DETENIDO"),
        T::HeldMessages => w!("messages held", "mensajes retenidos"),
        T::Latency => w!("network latency", "latencia de red"),
        T::LatencyAuto => w!("auto", "auto"),
        T::NotToScale => w!(
            "not to scale: messages are faster than the eye (slow time down to see them as they are)",
            "no a escala: los mensajes son más rápidos que la vista (ralentiza el tiempo para verlos tal cual)"
        ),
        T::TrueSpeed => w!("messages drawn at their true speed", "mensajes dibujados a su velocidad real"),
        T::FrozenActsLive => w!(
            "The view is frozen in the past; these controls act on the live cluster.",
            "La vista está congelada en el pasado; estos controles actúan sobre el clúster en directo."
        ),
        T::MessageTitle => w!("Message", "Mensaje"),
        T::Held => w!(
            "held in its sender's queue (time is stopped)",
            "retenido en la cola del emisor (el tiempo está detenido)"
        ),
        T::InFlight => w!("on its way", "de camino"),
        T::Lost => w!("lost", "perdido"),
        T::Stepping => w!("released by a step, arriving", "liberado por un paso, llegando"),
        T::DeliverNow => w!("Deliver now", "Entregar ya"),
        T::DropIt => w!("Drop it", "Descartarlo"),
        T::Close => w!("Close", "Cerrar"),
        T::ClickAMessage => w!(
            "Click a message (or a held envelope) to see its fields.",
            "Haz clic en un mensaje (o en un sobre retenido) para ver sus campos."
        ),
        // "2 of 3 needed" (votes granted, of the votes a majority needs): "2/3" reads as a fraction.
        T::VotesOf => w!("of", "de"),
        T::CloseLesson => w!("Close lesson", "Cerrar la lección"),
        T::ConfirmReset => w!(
            "Reset the cluster? Every server starts again on an empty disk: all keys, logs and sessions are lost.",
            "¿Reiniciar el clúster? Cada servidor vuelve a empezar con el disco vacío: se pierden todas las claves, los registros y las sesiones."
        ),
        T::VotesNeeded => w!("needed", "necesarios"),
        T::StillLeads => w!("still believes it leads term", "aún cree que lidera el término"),
        T::Deposed => w!("deposed", "depuesto"),
        T::Side => w!("side", "lado"),
        T::OneWayBlocked => w!("messages this way are lost", "los mensajes en este sentido se pierden"),
        T::Lessons => w!("Lessons", "Lecciones"),
        T::StartLesson => w!("Start", "Empezar"),
        T::Next => w!("Next ▸", "Siguiente ▸"),
        T::StopLesson => w!("Stop", "Detener"),
        T::LessonPassed => w!("The lesson's check held", "La comprobación de la lección se cumplió"),
        T::LessonFailed => w!("The lesson's check failed", "La comprobación de la lección falló"),
        T::LessonWaiting => w!("press Next (or N) to go on", "pulsa Siguiente (o N) para seguir"),
        T::LessonRunning => w!("working…", "en marcha…"),
        T::LessonsAdminOnly => w!(
            "The lecturer runs lessons; their captions appear here for everyone.",
            "El profesor lanza las lecciones; sus rótulos aparecen aquí para todos."
        ),
        T::Alarm => w!("ALARM", "ALARMA"),
        T::ProxyRow => w!("proxy", "proxy"),
        T::DeliberateDefects => w!("Deliberate defects switched on", "Defectos deliberados activados"),
        T::LegendTitle => w!("Legend", "Leyenda"),
        T::LegendFollower => w!("follower (circle)", "seguidor (círculo)"),
        T::LegendPreCandidate => w!("pre-candidate (dashed diamond)", "precandidato (rombo discontinuo)"),
        T::LegendCandidate => w!("candidate (diamond)", "candidato (rombo)"),
        T::LegendLeader => w!("leader (hexagon, ★)", "líder (hexágono, ★)"),
        T::LegendLearner => w!(
            "learner (dotted): a new server receiving the log, no vote until it catches up",
            "aprendiz (punteado): un servidor nuevo que recibe el log, sin voto hasta ponerse al día"
        ),
        T::LegendTimer => w!(
            "ring: election time left; when it empties the follower starts an election",
            "anillo: tiempo de elección restante; al vaciarse el seguidor inicia una elección"
        ),
        T::LegendPaused => w!("❚❚ paused (SIGSTOP)", "❚❚ en pausa (SIGSTOP)"),
        T::LegendCrashed => w!("✖ crashed (SIGKILL)", "✖ caído (SIGKILL)"),
        T::LegendUnreachable => w!("? not answering", "? no responde"),
        T::LegendCutOff => w!("✂ cut off (partition)", "✂ aislado (partición)"),
        T::LegendHeld => {
            w!("✉ held: waits while time is stopped", "✉ retenido: espera mientras el tiempo está detenido")
        }
        T::LegendLostMsg => w!("✗ lost, with the reason", "✗ perdido, con el motivo"),
        T::Shortcuts => w!("Keyboard shortcuts", "Atajos de teclado"),
        T::KeySpace => w!(
            "stop / run time (whatever has the focus)",
            "parar / correr el tiempo (tenga el foco lo que tenga)"
        ),
        T::KeyRight => w!("one step", "un paso"),
        T::KeyNext => w!("next caption of the lesson", "siguiente rótulo de la lección"),
        T::KeyEnter => w!(
            "on a server: its menu (Tab moves between servers)",
            "sobre un servidor: su menú (Tab pasa de uno a otro)"
        ),
        T::KeyEscape => w!("close menus and panels", "cerrar menús y paneles"),
        T::KeyHelp => w!("this help", "esta ayuda"),
        T::KeyPresent => w!("presentation mode", "modo presentación"),
        T::Done => w!("done", "hecho"),
        T::WithHeartbeats => w!("with heartbeats", "con latidos"),
        T::Reset => w!("Reset cluster", "Reiniciar clúster"),
        T::Snapshot2 => w!("Snapshot now", "Instantánea ya"),
        T::StudentsMayWrite => w!("students may write", "los alumnos pueden escribir"),
        T::WritesClosed => w!(
            "Reading is open to all; writing needs the lecturer to open it.",
            "Leer está abierto a todos; para escribir, el profesor debe abrirlo."
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

/// An admin command in words.
pub fn command(lang: Lang, command: &AdminCommand) -> String {
    if lang == Lang::En {
        return command.describe();
    }
    command.describe_es()
}

/// A client request in words.
pub fn request(lang: Lang, frame: &ClientFrame) -> String {
    let es = lang == Lang::Es;
    match frame {
        ClientFrame::Put { key, value, .. } => {
            if es {
                format!("escribir {key} = {value}")
            } else {
                format!("put {key} = {value}")
            }
        }
        ClientFrame::Get { key, consistency, .. } => {
            if es {
                format!("leer {key} ({consistency})")
            } else {
                format!("get {key} ({consistency})")
            }
        }
        ClientFrame::Delete { key, .. } => {
            if es {
                format!("borrar {key}")
            } else {
                format!("delete {key}")
            }
        }
        ClientFrame::Cas { key, expected, new, .. } => {
            let shown = expected.clone().unwrap_or_else(|| "∅".into());
            format!("cas {key}: {shown} → {new}")
        }
        ClientFrame::Admin { command: c, .. } => command(lang, c),
        ClientFrame::Status { .. } => "status".to_string(),
        ClientFrame::Register { .. } => if es { "abrir una sesión" } else { "open a session" }.to_string(),
        ClientFrame::Hello { .. } => "hello".to_string(),
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
                "No se aplicó: la sesión ya olvidó ese número de secuencia."
            } else {
                "Not applied: the session has already moved past that sequence number."
            }
        }
        ErrorKind::SessionConflict => {
            if es {
                "No se aplicó: la sesión ya usó ese número para otra escritura."
            } else {
                "Not applied: the session already used that number for another write."
            }
        }
        ErrorKind::SessionExpired => {
            if es {
                "No se aplicó: el clúster olvidó esta sesión. Recarga la página."
            } else {
                "Not applied: the cluster forgot this session. Reload the page."
            }
        }
        ErrorKind::StoreFull => {
            if es {
                "No se aplicó: el almacén está lleno. Borra alguna clave."
            } else {
                "Not applied: the store is full. Delete some keys."
            }
        }
        ErrorKind::TooLarge => {
            if es {
                "No se aplicó: el valor es demasiado grande para replicarlo."
            } else {
                "Not applied: the value is too large to replicate."
            }
        }
        ErrorKind::WrongCluster => {
            if es {
                "Ese servidor no pertenece a este clúster (o perdió su disco)."
            } else {
                "That server does not belong to this cluster (or it lost its disk)."
            }
        }
    };
    // The proxy's detail is English: shown in English pages; Spanish pages keep to Spanish.
    if es { plain.to_string() } else { format!("{plain} ({detail})") }
}
