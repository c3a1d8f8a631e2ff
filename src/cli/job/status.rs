//! `job status`: the job list, or one job with its groups, evaluations and allocations.

use super::{not_found, resolve_scoped, StatusArgs};
use crate::cli::alloc::{alloc_table, AllocTableKind};
use crate::cli::format::{api_error, kv, now_nanos, rfc3339, table};
use crate::cli::monitor;
use api::{Client, Evaluation, Job, JobListStub, QueryOptions};
use std::collections::BTreeMap;

/// `running`, or `dead (stopped)` for a job someone stopped.
pub fn status_word(status: &str, stop: bool) -> String {
    if stop {
        format!("{status} (stopped)")
    } else {
        status.to_string()
    }
}

/// The job list as `job status` prints it (also shown when a prefix matches several jobs).
pub(super) fn job_list_table(jobs: &[JobListStub]) -> String {
    // Jobs of several namespaces (`-namespace '*'`) say which is whose.
    let namespaced = jobs.iter().any(|j| j.namespace != jobs[0].namespace);
    let mut header = vec!["ID", "Type", "Priority", "Status", "Submit Date"];
    if namespaced {
        header.insert(1, "Namespace");
    }
    table(
        &header,
        jobs.iter()
            .map(|j| {
                let mut row = vec![
                    j.id.clone(),
                    j.job_type.clone(),
                    j.priority.to_string(),
                    status_word(&j.status, j.stop),
                    rfc3339(j.submit_time),
                ];
                if namespaced {
                    row.insert(1, j.namespace.clone());
                }
                row
            })
            .collect(),
    )
}

/// The job list (`job status` and `status` without an ID).
pub async fn list(client: &Client, _verbose: bool) -> anyhow::Result<i32> {
    let (jobs, _) = client
        .jobs(&QueryOptions::default())
        .await
        .map_err(|e| api_error("querying jobs", e))?;
    if jobs.is_empty() {
        println!("No running jobs");
    } else {
        println!("{}", job_list_table(&jobs));
    }
    Ok(0)
}

pub async fn status(client: &Client, args: StatusArgs) -> anyhow::Result<i32> {
    let Some(prefix) = args.job else {
        return list(client, args.verbose).await;
    };
    let Some((id, client)) = resolve_scoped(client, &prefix).await? else {
        return not_found(&prefix);
    };
    let client = &client;
    let job = match client.job(&id).await {
        Ok((job, _)) => job,
        Err(e) if e.is_not_found() => return not_found(&prefix),
        Err(e) => return Err(api_error("querying job", e)),
    };
    println!("{}", job_header(&job));
    if args.short {
        return Ok(0);
    }

    let summary = match client.job_summary(&id).await {
        Ok((s, _)) => s.summary,
        Err(e) if e.is_not_found() => BTreeMap::new(),
        Err(e) => return Err(api_error("querying job summary", e)),
    };
    println!("\nSummary\n{}", summary_table(&job, &summary));

    if let Ok((Some(d), _)) = client
        .job_latest_deployment(&id, &QueryOptions::default())
        .await
    {
        println!(
            "\nLatest Deployment\n{}",
            crate::cli::deployment::latest_block(&d, args.verbose)
        );
    }

    // Evaluations only explain failed placements; a server without them is no error.
    if let Ok((evals, _)) = client.job_evaluations(&id).await {
        if let Some(text) = placement_failure(&evals) {
            println!("\nPlacement Failure\n{text}");
        }
    }

    let (mut allocs, _) = client
        .job_allocations(&id, &QueryOptions::default())
        .await
        .map_err(|e| api_error("querying job allocations", e))?;
    allocs.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    println!("\nAllocations");
    if allocs.is_empty() {
        println!("No allocations placed");
    } else {
        println!(
            "{}",
            alloc_table(&allocs, args.verbose, now_nanos(), AllocTableKind::Job)
        );
    }
    Ok(0)
}

fn job_header(job: &Job) -> String {
    let dcs = if job.datacenters.is_empty() {
        "*".to_string()
    } else {
        job.datacenters.join(",")
    };
    let name = if job.name.is_empty() {
        &job.id
    } else {
        &job.name
    };
    let pool = if job.node_pool.is_empty() {
        "default"
    } else {
        &job.node_pool
    };
    kv(&[
        ("ID", job.id.clone()),
        ("Name", name.clone()),
        ("Submit Date", rfc3339(job.submit_time)),
        ("Type", job.job_type.clone()),
        ("Priority", job.priority.to_string()),
        ("Datacenters", dcs),
        ("Namespace", job.ns().to_string()),
        ("Node Pool", pool.to_string()),
        ("Status", status_word(&job.status, job.stop)),
        ("Periodic", job.periodic.is_some().to_string()),
        ("Parameterized", job.parameterized_job.is_some().to_string()),
    ])
}

/// One row per task group, including groups the summary does not know yet.
fn summary_table(job: &Job, summary: &BTreeMap<String, api::TaskGroupSummary>) -> String {
    let mut groups: BTreeMap<&str, api::TaskGroupSummary> = job
        .task_groups
        .iter()
        .map(|g| (g.name.as_str(), Default::default()))
        .collect();
    for (name, s) in summary {
        groups.insert(name, s.clone());
    }
    table(
        &[
            "Task Group",
            "Queued",
            "Starting",
            "Running",
            "Failed",
            "Complete",
            "Lost",
            "Unknown",
        ],
        groups
            .into_iter()
            .map(|(name, s)| {
                vec![
                    name.to_string(),
                    s.queued.to_string(),
                    s.starting.to_string(),
                    s.running.to_string(),
                    s.failed.to_string(),
                    s.complete.to_string(),
                    s.lost.to_string(),
                    s.unknown.to_string(),
                ]
            })
            .collect(),
    )
}

/// While a blocked evaluation waits for capacity, the newest evaluation that failed to
/// place says why.
fn placement_failure(evals: &[Evaluation]) -> Option<String> {
    if !evals.iter().any(|e| e.status == api::EVAL_STATUS_BLOCKED) {
        return None;
    }
    let failed = evals
        .iter()
        .filter(|e| !e.failed_tg_allocs.is_empty())
        .max_by_key(|e| e.create_index)?;
    let mut lines = Vec::new();
    for (group, metric) in &failed.failed_tg_allocs {
        lines.push(format!("Task Group {group:?}:"));
        lines.extend(monitor::render_metric(metric, "  "));
    }
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_jobs_say_so() {
        assert_eq!(status_word("dead", true), "dead (stopped)");
        assert_eq!(status_word("running", false), "running");
    }

    #[test]
    fn summary_lists_groups_the_server_has_not_counted_yet() {
        let job = Job {
            id: "web".into(),
            task_groups: vec![
                api::TaskGroup {
                    name: "a".into(),
                    ..Default::default()
                },
                api::TaskGroup {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut s = BTreeMap::new();
        s.insert(
            "b".to_string(),
            api::TaskGroupSummary {
                running: 2,
                ..Default::default()
            },
        );
        let out = summary_table(&job, &s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("a "));
        assert!(lines[2].split_whitespace().nth(3) == Some("2"));
    }

    #[test]
    fn placement_failure_shows_only_while_blocked() {
        let mut failed = Evaluation {
            status: "complete".into(),
            create_index: 5,
            ..Default::default()
        };
        failed.failed_tg_allocs.insert(
            "g".into(),
            api::AllocMetric {
                nodes_evaluated: 1,
                nodes_exhausted: 1,
                ..Default::default()
            },
        );
        assert_eq!(placement_failure(std::slice::from_ref(&failed)), None);
        let blocked = Evaluation {
            status: "blocked".into(),
            create_index: 6,
            ..Default::default()
        };
        assert_eq!(
            placement_failure(&[failed, blocked]).unwrap(),
            "Task Group \"g\":\n  * Resources exhausted on 1 nodes"
        );
    }
}
