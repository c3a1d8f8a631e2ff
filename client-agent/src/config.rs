//! The client agent's configuration, as the `drover agent` command fills it in.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentConfig {
    /// Client state lives under here: `node-id`, `alloc/`, `client-state/`.
    pub data_dir: PathBuf,
    /// Servers' RPC addresses (`host:port` or `http://host:port`), e.g. `10.0.0.1:4647`:
    /// registration, heartbeats, allocation updates and the allocation watch go there.
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
    /// The exec driver's settings (`plugin "exec"`, the client's `user.denylist`).
    pub exec: crate::driver::exec::ExecConfig,
    /// The docker driver's settings (`plugin "docker"`).
    pub docker: crate::driver::docker::DockerPluginConfig,
    /// This agent's advertised HTTP address (`host:port`), for `Node.HTTPAddr`.
    pub http_addr: String,
}
