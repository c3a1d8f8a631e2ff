//! The client agent's configuration, as the `drover agent` command fills it in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// `tls { rpc = true }`: servers are dialled over https with this agent's certificate
    /// (`client.<region>.nomad`), theirs checked against the CA (and for
    /// `server.<region>.nomad` with `verify_server_hostname`).
    pub tls: Option<ServersTls>,
}

/// How a client agent dials its servers over TLS (built once, from the `tls` block).
#[derive(Debug, Clone)]
pub struct ServersTls {
    dialer: Arc<drover_tls::rustls::ClientConfig>,
}

impl ServersTls {
    /// `None` unless the agent's TLS covers RPC.
    pub fn new(tls: &drover_tls::AgentTls) -> Result<Option<Self>, drover_tls::TlsError> {
        if !tls.rpc {
            return Ok(None);
        }
        Ok(Some(ServersTls {
            dialer: Arc::new(tls.dialer()?),
        }))
    }
}

impl PartialEq for ServersTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.dialer, &other.dialer)
    }
}

impl AgentConfig {
    /// The client for this agent's servers: https with its certificate when `tls` is
    /// set, plain HTTP otherwise.
    pub fn servers_client(&self) -> anyhow::Result<api::Client> {
        match &self.tls {
            Some(t) => api::Client::with_addresses_tls(&self.servers, (*t.dialer).clone())
                .map_err(anyhow::Error::msg),
            None => Ok(api::Client::with_addresses(&self.servers)),
        }
    }
}
