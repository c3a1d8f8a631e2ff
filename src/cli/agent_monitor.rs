//! `drover monitor [-log-level LEVEL] [-json]`: the agent's log lines as it writes them
//! (`GET /v1/agent/monitor`), at any level whatever the agent itself logs at, until
//! interrupted or until the agent goes away, as `nomad monitor` does.

use super::format::{api_error, describe_api_error};
use api::Client;
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// The most verbose level to stream: trace, debug, info, warn or error.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "info",
          value_parser = super::agent::parse_log_level)]
    pub log_level: String,
    /// Stream the lines as JSON objects.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, args: MonitorArgs) -> anyhow::Result<i32> {
    let mut stream = client
        .agent_monitor(&args.log_level, args.json)
        .await
        .map_err(|e| api_error("starting the log monitor", e))?;
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let bytes = match chunk {
            Ok(b) => b,
            Err(e) => {
                eprintln!("Error streaming logs: {}", describe_api_error(&e));
                return Ok(1);
            }
        };
        if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
            // Whoever read our output (a pipe into `head`) has gone.
            return Ok(0);
        }
    }
    eprintln!(
        "Remote side ended the monitor! This usually means that the remote side has exited \
         or crashed."
    );
    Ok(1)
}
