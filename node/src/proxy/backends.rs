//! The servers a proxy knows, which change while it runs: the supervisor starts servers that
//! join the cluster and stops removed ones. Readers take a snapshot (a few `Arc`s), so no lock
//! is held across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shared::protocol::{ApiError, ErrorKind, NodeAddress};
use shared::raft::NodeId;

use super::backend::Backend;

#[derive(Default)]
pub struct Backends(RwLock<BTreeMap<NodeId, Arc<Backend>>>);

impl Backends {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, Arc<Backend>>> {
        self.0.read().expect("backends lock")
    }

    pub fn get(&self, id: &NodeId) -> Option<Arc<Backend>> {
        self.read().get(id).cloned()
    }

    /// The server `id`, or the error a client should see for a server that does not exist.
    pub fn require(&self, id: NodeId) -> Result<Arc<Backend>, ApiError> {
        self.get(&id).ok_or_else(|| {
            let ids: Vec<String> = self.keys().map(|i| i.to_string()).collect();
            ApiError::new(ErrorKind::BadRequest, format!("there is no node {id} (nodes: {})", ids.join(", ")))
        })
    }

    pub fn contains_key(&self, id: &NodeId) -> bool {
        self.read().contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn keys(&self) -> std::vec::IntoIter<NodeId> {
        self.read().keys().copied().collect::<Vec<_>>().into_iter()
    }

    pub fn values(&self) -> std::vec::IntoIter<Arc<Backend>> {
        self.read().values().cloned().collect::<Vec<_>>().into_iter()
    }

    pub fn iter(&self) -> std::vec::IntoIter<(NodeId, Arc<Backend>)> {
        self.read().iter().map(|(id, b)| (*id, b.clone())).collect::<Vec<_>>().into_iter()
    }

    /// Every server and where it listens, for pages.
    pub fn addresses(&self) -> Vec<NodeAddress> {
        self.read().values().map(|b| NodeAddress { id: b.id, address: b.address.clone() }).collect()
    }

    /// Adds a server; false if one with its id is already known.
    pub fn insert(&self, backend: Arc<Backend>) -> bool {
        let mut map = self.0.write().expect("backends lock");
        if map.contains_key(&backend.id) {
            return false;
        }
        map.insert(backend.id, backend);
        true
    }

    pub fn remove(&self, id: NodeId) -> Option<Arc<Backend>> {
        self.0.write().expect("backends lock").remove(&id)
    }
}

impl FromIterator<Arc<Backend>> for Backends {
    fn from_iter<I: IntoIterator<Item = Arc<Backend>>>(iter: I) -> Backends {
        Backends(RwLock::new(iter.into_iter().map(|b| (b.id, b)).collect()))
    }
}
