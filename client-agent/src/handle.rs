//! [`ClientHandle`]: the running client agent as its HTTP API sees it: the allocations
//! on this node (their latest state and a way to send them restart and signal requests),
//! the drivers (for exec and resource usage) and the node.

use crate::alloc_runner::{AllocControl, AllocView, ControlError};
use crate::config::AgentConfig;
use crate::driver::Drivers;
use api::Node;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::oneshot;

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    drivers: Drivers,
    node: RwLock<Option<Arc<Node>>>,
    allocs: RwLock<BTreeMap<String, AllocView>>,
    /// The client the agent talks to its servers with (set once it runs); its clones
    /// share the address list, so replacing it here redirects the agent.
    servers: RwLock<Option<api::Client>>,
    /// Set once a server has taken the node's registration as ready.
    registered: AtomicBool,
}

/// A cheap, cloneable view of a running client agent.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    inner: Arc<Inner>,
}

impl ClientHandle {
    /// A handle for an agent about to run with `config` (its drivers are made here).
    pub fn new(config: &AgentConfig) -> Self {
        Self::with_drivers(&config.data_dir, Drivers::from_agent_config(config))
    }

    pub fn with_drivers(data_dir: &Path, drivers: Drivers) -> Self {
        ClientHandle {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_path_buf(),
                drivers,
                node: RwLock::new(None),
                allocs: RwLock::new(BTreeMap::new()),
                servers: RwLock::new(None),
                registered: AtomicBool::new(false),
            }),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn drivers(&self) -> &Drivers {
        &self.inner.drivers
    }

    /// The fingerprinted node; `None` while the agent is starting.
    pub fn node(&self) -> Option<Arc<Node>> {
        self.inner.node.read().expect("node lock").clone()
    }

    pub(crate) fn set_node(&self, node: Arc<Node>) {
        *self.inner.node.write().expect("node lock") = Some(node);
    }

    /// The client's part of `/v1/agent/health`: healthy once a server has registered the
    /// node as ready (before that the node cannot be given work).
    pub fn health(&self) -> (bool, &'static str) {
        if self.inner.registered.load(Ordering::Acquire) {
            (true, "ok")
        } else {
            (false, "the node has not registered with a server yet")
        }
    }

    pub(crate) fn set_registered(&self) {
        self.inner.registered.store(true, Ordering::Release);
    }

    pub(crate) fn set_servers_client(&self, client: api::Client) {
        *self.inner.servers.write().expect("servers lock") = Some(client);
    }

    /// The servers' addresses the agent talks to (`host:port`, as Nomad lists them,
    /// whether they are dialled over http or https); empty while it starts.
    pub fn servers(&self) -> Vec<String> {
        let client = self.inner.servers.read().expect("servers lock").clone();
        client
            .map(|c| c.addresses())
            .unwrap_or_default()
            .iter()
            .map(|a| without_scheme(a).to_string())
            .collect()
    }

    /// Replace the servers the agent talks to (Nomad's `PUT /v1/agent/servers`).
    pub fn set_servers(&self, addrs: &[String]) -> Result<(), String> {
        let client = self.inner.servers.read().expect("servers lock").clone();
        match client {
            Some(c) => c.set_addresses(addrs),
            None => Err("the client agent is still starting; try again".into()),
        }
    }

    pub(crate) fn insert(&self, alloc_id: &str, view: AllocView) {
        self.inner
            .allocs
            .write()
            .expect("allocs lock")
            .insert(alloc_id.to_string(), view);
    }

    pub(crate) fn remove(&self, alloc_id: &str) {
        self.inner
            .allocs
            .write()
            .expect("allocs lock")
            .remove(alloc_id);
    }

    /// The allocation with this ID, if it runs (or ran and is not yet collected) here.
    pub fn alloc(&self, alloc_id: &str) -> Option<AllocView> {
        self.inner
            .allocs
            .read()
            .expect("allocs lock")
            .get(alloc_id)
            .cloned()
    }

    pub fn alloc_ids(&self) -> Vec<String> {
        self.inner
            .allocs
            .read()
            .expect("allocs lock")
            .keys()
            .cloned()
            .collect()
    }

    async fn control(
        &self,
        alloc_id: &str,
        make: impl FnOnce(oneshot::Sender<Result<(), ControlError>>) -> AllocControl,
    ) -> Result<(), ControlError> {
        let view = self.alloc(alloc_id).ok_or_else(|| {
            ControlError::NotFound(format!("allocation {alloc_id} is not on this node"))
        })?;
        let (tx, rx) = oneshot::channel();
        view.control.send(make(tx)).map_err(|_| {
            ControlError::Failed(format!("allocation {alloc_id} is no longer running"))
        })?;
        rx.await.map_err(|_| {
            ControlError::Failed(format!("allocation {alloc_id} is no longer running"))
        })?
    }

    /// Restarts one task, or every running task of the allocation.
    pub async fn restart(&self, alloc_id: &str, task: Option<String>) -> Result<(), ControlError> {
        self.control(alloc_id, |reply| AllocControl::Restart { task, reply })
            .await
    }

    /// Signals one task, or every running task of the allocation.
    pub async fn signal(
        &self,
        alloc_id: &str,
        task: Option<String>,
        signal: String,
    ) -> Result<(), ControlError> {
        self.control(alloc_id, |reply| AllocControl::Signal {
            task,
            signal,
            reply,
        })
        .await
    }
}

/// `addr` without its `http://` or `https://` prefix.
fn without_scheme(addr: &str) -> &str {
    addr.strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_listed_without_either_scheme() {
        assert_eq!(without_scheme("http://10.0.0.1:4647"), "10.0.0.1:4647");
        assert_eq!(without_scheme("https://10.0.0.1:4647"), "10.0.0.1:4647");
        assert_eq!(without_scheme("10.0.0.1:4647"), "10.0.0.1:4647");
        assert_eq!(without_scheme("https://[::1]:4647"), "[::1]:4647");
    }

    #[test]
    fn a_tls_agents_server_list_shows_no_https_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let h = ClientHandle::with_drivers(dir.path(), Drivers::default());
        assert!(h.servers().is_empty(), "nothing while the agent starts");
        h.set_servers_client(api::Client::with_addresses(&[
            "https://127.0.0.1:4647".to_string(),
            "http://127.0.0.2:4647".to_string(),
        ]));
        assert_eq!(h.servers(), ["127.0.0.1:4647", "127.0.0.2:4647"]);
    }
}
