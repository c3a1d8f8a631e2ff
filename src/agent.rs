//! `drover agent`: runs a server, a client, or both (`-dev`) in this process.

use std::path::PathBuf;

/// Everything `drover agent` can be told on its command line.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// One process holding a single-voter server and a client, raw_exec enabled.
    pub dev: bool,
    pub server: bool,
    pub client: bool,
    /// Where state lives; defaults to a `drover-data` dir.
    pub data_dir: Option<PathBuf>,
    /// Address to bind the HTTP API to (default 127.0.0.1).
    pub bind: String,
    /// HTTP API port (default 4646).
    pub http_port: u16,
    /// Servers a client agent talks to (`-servers`), HTTP addresses.
    pub servers: Vec<String>,
    pub node_name: Option<String>,
    pub datacenter: Option<String>,
    pub node_class: Option<String>,
    /// `-meta k=v`, repeated.
    pub meta: Vec<(String, String)>,
    /// `-config FILE`, repeated (agent configuration in HCL).
    pub config_files: Vec<PathBuf>,
    /// `-log-level` (trace, debug, info, warn, error).
    pub log_level: Option<String>,
}

pub async fn run(_opts: AgentOptions) -> anyhow::Result<()> {
    anyhow::bail!("not yet wired")
}
