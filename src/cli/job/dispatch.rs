//! `job dispatch` (launch a parameterized job's child) and `job periodic force`.

use crate::cli::format::api_error;
use crate::cli::{monitor, parse_key_value};
use api::{Client, JobDispatchRequest};
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DispatchArgs {
    /// Metadata for the dispatched job (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub meta: Vec<(String, String)>,
    /// A prefix for the dispatched job's ID.
    #[arg(long = "id-prefix-template", default_value = "")]
    pub id_prefix_template: String,
    /// Return as soon as the job is dispatched, without following its evaluation.
    #[arg(long)]
    pub detach: bool,
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// The parameterized job.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// A file whose bytes are the payload; `-` reads standard input.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PeriodicForceArgs {
    /// Return as soon as the child is launched, without following its evaluation.
    #[arg(long)]
    pub detach: bool,
    /// Show full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// The periodic job.
    #[arg(value_name = "JOB")]
    pub job: String,
}

pub async fn dispatch(client: &Client, args: DispatchArgs) -> anyhow::Result<i32> {
    let payload = match &args.input {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
        Some(p) => std::fs::read(p)
            .map_err(|e| anyhow::anyhow!("Error reading input data: {}: {e}", p.display()))?,
    };
    let req = JobDispatchRequest {
        job_id: args.job.clone(),
        payload: base64(&payload),
        meta: args.meta.into_iter().collect(),
        id_prefix_template: args.id_prefix_template,
    };
    let resp = client
        .dispatch_job(&args.job, &req)
        .await
        .map_err(|e| api_error("dispatching job", e))?;
    println!("Dispatched Job ID = {}", resp.dispatched_job_id);
    println!("Evaluation ID     = {}", resp.eval_id);
    if args.detach || resp.eval_id.is_empty() {
        return Ok(0);
    }
    println!();
    monitor::monitor(client, &resp.eval_id, args.verbose).await
}

pub async fn periodic_force(client: &Client, args: PeriodicForceArgs) -> anyhow::Result<i32> {
    let resp = client
        .periodic_force(&args.job)
        .await
        .map_err(|e| api_error("forcing periodic job", e))?;
    if args.detach || resp.eval_id.is_empty() {
        println!("Force periodic successful");
        if !resp.eval_id.is_empty() {
            println!("Evaluation ID: {}", resp.eval_id);
        }
        return Ok(0);
    }
    monitor::monitor(client, &resp.eval_id, args.verbose).await
}

/// Standard base64 with padding (Nomad's JSON encoding of bytes).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"h"), "aA==");
        assert_eq!(super::base64(b"hi"), "aGk=");
        assert_eq!(super::base64(b"hello"), "aGVsbG8=");
    }
}
