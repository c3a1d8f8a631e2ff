//! `job run`'s deployment monitor: once the evaluation is done, follow the deployment of
//! the version just registered until it ends, as `nomad job run` does; exit 1 when it
//! fails.

use crate::cli::deployment::status_text;
use crate::cli::format::{api_error, id, now_rfc3339};
use api::{Client, QueryOptions};
use std::time::Duration;

/// Follows the deployment of `job_id` at `job_modify_index` (if the version has one);
/// returns `code` unless the deployment fails or is cancelled (1).
pub async fn follow_deployment(
    client: &Client,
    job_id: &str,
    job_modify_index: u64,
    code: i32,
    verbose: bool,
) -> anyhow::Result<i32> {
    if code != 0 {
        // Placements failed: the evaluation's report says why; do not wait on them.
        return Ok(code);
    }
    // This version's deployment (a newer one, an auto-revert say, may exist already).
    let Ok((ds, meta)) = client.job_deployments(job_id).await else {
        return Ok(code);
    };
    let Some(mut d) = ds
        .into_iter()
        .find(|d| d.job_modify_index == job_modify_index)
    else {
        // No deployment of this version (no update block, or nothing changed).
        return Ok(code);
    };
    println!(
        "==> {}: Monitoring deployment {:?}",
        now_rfc3339(),
        id(&d.id, verbose)
    );
    let mut index = meta.last_index;
    let mut said = String::new();
    loop {
        let progress: i64 = d.task_groups.values().map(|g| g.healthy_allocs).sum();
        let desired: i64 = d.task_groups.values().map(|g| g.desired_total).sum();
        let line = format!("{} ({progress}/{desired} healthy)", d.status_description);
        if line != said {
            println!("    {}: {line}", now_rfc3339());
            said = line;
        }
        let needs_promotion = d.status_description == api::DEPLOYMENT_DESC_NEEDS_PROMOTION;
        if !d.active() || needs_promotion {
            println!("\n{}", status_text(&d, verbose));
            if needs_promotion {
                println!(
                    "\nPromote the canaries with `drover deployment promote {}`",
                    id(&d.id, verbose)
                );
            }
            return Ok(match d.status.as_str() {
                api::DEPLOYMENT_STATUS_FAILED | api::DEPLOYMENT_STATUS_CANCELLED => 1,
                _ => code,
            });
        }
        let (next, meta) = client
            .deployment(
                &d.id,
                &QueryOptions::blocking(index, Duration::from_secs(5)),
            )
            .await
            .map_err(|e| api_error("retrieving deployment", e))?;
        index = meta.last_index.max(index);
        d = next;
    }
}
