//! `job run` and `job validate`: a job file checked and, for `run`, submitted and followed.

use super::{job_json, load_job, place_in_namespace, RunArgs, ValidateArgs};
use crate::cli::format::api_error;
use crate::cli::monitor;
use api::Client;

pub async fn run(client: &Client, args: RunArgs) -> anyhow::Result<i32> {
    let mut job = match load_job(&args.file, &args.vars, &args.var_files) {
        Ok(job) => job,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(1);
        }
    };
    if args.output {
        println!("{}", job_json(&job)?);
        return Ok(0);
    }
    let client = &place_in_namespace(client, &mut job);
    let resp = client
        .register_job_opts(&job, args.check_index)
        .await
        .map_err(|e| api_error("submitting job", e))?;
    if !resp.warnings.is_empty() {
        println!("Job Warnings:\n{}\n", resp.warnings.trim_end());
    }
    if args.detach || resp.eval_id.is_empty() {
        println!("Job registration successful");
        if !resp.eval_id.is_empty() {
            println!("Evaluation ID: {}", resp.eval_id);
        }
        return Ok(0);
    }
    let code = monitor::monitor(client, &resp.eval_id, args.verbose).await?;
    super::watch::follow_deployment(client, &job.id, resp.job_modify_index, code, args.verbose)
        .await
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let mut job = match load_job(&args.file, &args.vars, &args.var_files) {
        Ok(job) => job,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(1);
        }
    };
    // The jobspec parser checks the file; these are the checks the server will make.
    job.canonicalize();
    let errs = job.validate();
    if !errs.is_empty() {
        eprintln!("Job validation errors:");
        for e in errs {
            eprintln!("  * {e}");
        }
        return Ok(1);
    }
    println!("Job validation successful");
    Ok(0)
}
