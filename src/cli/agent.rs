//! `drover agent`: its flags, turned into [`crate::agent::AgentOptions`], the log
//! subscriber, and the multi-threaded runtime the agent runs in.

use crate::agent::AgentOptions;
use server::log_monitor::LogMonitor;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Development mode: one process is a single-node server and a client, raw_exec on.
    #[arg(long)]
    pub dev: bool,
    /// Run a server.
    #[arg(long)]
    pub server: bool,
    /// Run a client.
    #[arg(long)]
    pub client: bool,
    /// Where the agent keeps its state.
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP API and the RPC listener bind to [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Port of the HTTP API [default: 4646].
    #[arg(long = "http-port", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Port of the RPC listener: peer servers, client agents and forwarded requests (Nomad
    /// uses 4647). Needed to form or join a cluster or to serve remote clients; without it
    /// a server runs alone (`-dev` opens a loopback one for its own client).
    #[arg(long = "rpc-port", value_name = "PORT")]
    pub rpc_port: Option<u16>,
    /// Servers to wait for before forming the first cluster.
    #[arg(long = "bootstrap-expect", value_name = "N")]
    pub bootstrap_expect: Option<usize>,
    /// A server's RPC address (host:port) to form or join a cluster with (repeatable).
    #[arg(
        long,
        visible_alias = "retry-join",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub join: Vec<String>,
    /// A server's RPC address for a client (`host:port` or `http://host:port`, e.g.
    /// 10.0.0.1:4647; repeat, or separate with commas).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// The node's name (default: the host name).
    #[arg(long = "node-name", visible_alias = "node", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The node's datacenter.
    #[arg(long = "dc", visible_alias = "datacenter", value_name = "DC")]
    pub datacenter: Option<String>,
    /// The node's class, for constraints.
    #[arg(long = "node-class", value_name = "CLASS")]
    pub node_class: Option<String>,
    /// Node metadata (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = super::parse_key_value)]
    pub meta: Vec<(String, String)>,
    /// An agent configuration file in HCL (repeatable).
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// trace, debug, info, warn or error (RUST_LOG overrides it).
    #[arg(long = "log-level", value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,
    /// Check ACL tokens on every request (as `acl { enabled = true }`).
    #[arg(long = "acl-enabled")]
    pub acl_enabled: bool,
}

impl AgentArgs {
    pub fn into_options(self) -> AgentOptions {
        AgentOptions {
            dev: self.dev,
            server: self.server,
            client: self.client,
            data_dir: self.data_dir,
            bind: self.bind,
            http_port: self.http_port,
            rpc_port: self.rpc_port,
            bootstrap_expect: self.bootstrap_expect,
            join: self.join,
            servers: self.servers,
            node_name: self.node_name,
            datacenter: self.datacenter,
            node_class: self.node_class,
            meta: self.meta,
            config_files: self.config,
            log_level: self.log_level,
            acl_enabled: self.acl_enabled,
        }
    }
}

/// Nomad's level names (`INFO`, `WARN`, `ERR`) and tracing's, normalised to tracing's.
pub(crate) fn parse_log_level(s: &str) -> Result<String, String> {
    let level = match s.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        _ => {
            return Err(format!(
                "unknown log level {s:?}: use trace, debug, info, warn or error"
            ))
        }
    };
    Ok(level.to_string())
}

/// Drover's own crates: logged at the agent's level, and heard by `drover monitor` at any.
const OUR_CRATES: [&str; 8] = [
    "drover",
    "api",
    "acl",
    "jobspecs",
    "scheduler",
    "server",
    "client_agent",
    "ui",
];

/// The filter for a `-log-level`: Drover's own crates at that level, dependencies (Raft,
/// HTTP, storage) at warn (error when the level is error), because at info and below
/// they drown the agent's own lines. RUST_LOG is the way to hear them.
pub fn log_filter(level: &str) -> String {
    let deps = if level == "error" { "error" } else { "warn" };
    let mut f = deps.to_string();
    for c in OUR_CRATES {
        f.push_str(&format!(",{c}={level}"));
    }
    f
}

/// The agent's log: stderr at its level, plus the layer that feeds `drover monitor`
/// (returned, for the server's `/v1/agent/monitor`).
fn init_logging(level: &str) -> LogMonitor {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("Ignoring RUST_LOG={v:?}: {e}");
            EnvFilter::new(log_filter(level))
        }),
        _ => EnvFilter::new(log_filter(level)),
    };
    // Colour only for people: log files and journald get plain text.
    let ansi = std::io::stderr().is_terminal();
    let logs = LogMonitor::new();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(filter);
    // try_init: a second subscriber (tests) is not worth dying over.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(crate::monitor_layer::layer(logs.clone(), &OUR_CRATES))
        .try_init();
    logs
}

/// Run the agent until it stops; returns the exit code.
pub fn run(args: AgentArgs) -> i32 {
    let opts = args.into_options();
    let logs = init_logging(opts.log_level.as_deref().unwrap_or("info"));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("drover-agent")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(crate::agent::run(opts, logs)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error running agent: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomad_log_level_names_are_understood() {
        assert_eq!(parse_log_level("INFO").unwrap(), "info");
        assert_eq!(parse_log_level("ERR").unwrap(), "error");
        assert_eq!(parse_log_level("Warn").unwrap(), "warn");
        assert!(parse_log_level("loud").is_err());
    }

    #[test]
    fn log_filter_quietens_dependencies() {
        let f = log_filter("debug");
        assert!(f.starts_with("warn,"));
        assert!(f.contains("server=debug"));
        assert!(f.contains("client_agent=debug"));
    }
}
