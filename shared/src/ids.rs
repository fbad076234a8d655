//! The numbers everything else is counted in. At the bottom of the crate: the store, the
//! Raft vocabulary and the core all name them.

/// A server's identity in the cluster. Small positive integers (1, 2, 3…) so that people can
/// say "node 2" in a lecture.
pub type NodeId = u64;
/// Raft's logical clock: each term has at most one leader.
pub type Term = u64;
/// Position in the replicated log; the first entry has index 1.
pub type Index = u64;
/// Time as given by the caller, in milliseconds. The core never reads a clock: in the node it is
/// real time (stretched by the time scale), in the simulator it is virtual.
pub type Millis = u64;
/// Identifies a linearizable read request on the server that asked for it.
pub type ReadId = u64;
/// Identifies a message among those its sender ever sent, so that observers can follow it from
/// sending to delivery or loss. The core leaves it 0; the sender's network layer (`Transit`)
/// numbers messages as they leave.
pub type MessageId = u64;
