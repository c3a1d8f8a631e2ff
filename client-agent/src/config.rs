//! The client agent's configuration, as the `drover agent` command fills it in.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentConfig {
    /// Client state lives under here: `node-id`, `alloc/`, `client-state/`.
    pub data_dir: PathBuf,
    /// Server HTTP addresses, e.g. `http://127.0.0.1:4646`.
    pub servers: Vec<String>,
    /// Defaults to the hostname when empty.
    pub node_name: String,
    /// Defaults to `dc1` when empty.
    pub datacenter: String,
    pub node_class: String,
    /// Defaults to `default` when empty.
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
    /// On in `-dev`, opt-in otherwise.
    pub raw_exec_enabled: bool,
    /// This agent's advertised HTTP address (`host:port`), for `Node.HTTPAddr`.
    pub http_addr: String,
}
