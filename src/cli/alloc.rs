//! `drover alloc status`, and the allocation tables the job and node views share.

use crate::cli::format::{api_error, id, kv, now_nanos, or_none, rfc3339, table, time_cell};
use crate::cli::job::narrow;
use api::{Allocation, AllocationListStub, Client, QueryOptions, TaskEvent};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// An allocation ID or a prefix of one.
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
}

/// Which identifying columns an allocation table carries besides the allocation's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocTableKind {
    /// A job's allocations: which node each is on.
    Job,
    /// A node's allocations: which job each belongs to.
    Node,
    /// Allocations of anything: both.
    Any,
}

/// Allocations as a table: `ID  Node ID  Task Group  Version  Desired  Status  Created
/// Modified`, with the eval and node name and exact times under `-verbose`.
pub fn alloc_table(
    allocs: &[AllocationListStub],
    verbose: bool,
    now: i64,
    kind: AllocTableKind,
) -> String {
    let with_node = kind != AllocTableKind::Node;
    let with_job = kind != AllocTableKind::Job;
    let mut header = vec!["ID"];
    if verbose {
        header.push("Eval ID");
    }
    if with_job {
        header.push("Job ID");
    }
    if with_node {
        header.push("Node ID");
        if verbose {
            header.push("Node Name");
        }
    }
    header.extend([
        "Task Group",
        "Version",
        "Desired",
        "Status",
        "Created",
        "Modified",
    ]);
    let rows = allocs
        .iter()
        .map(|a| {
            let mut row = vec![id(&a.id, verbose).to_string()];
            if verbose {
                row.push(a.eval_id.clone());
            }
            if with_job {
                row.push(a.job_id.clone());
            }
            if with_node {
                row.push(id(&a.node_id, verbose).to_string());
                if verbose {
                    row.push(a.node_name.clone());
                }
            }
            row.extend([
                a.task_group.clone(),
                a.job_version.to_string(),
                a.desired_status.clone(),
                a.client_status.clone(),
                time_cell(a.create_time, verbose, now),
                time_cell(a.modify_time, verbose, now),
            ]);
            row
        })
        .collect();
    table(&header, rows)
}

/// Allocations whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<AllocationListStub>> {
    if prefix.is_empty() {
        anyhow::bail!("An allocation ID (or a prefix of one) is required");
    }
    let opts = QueryOptions {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    let (allocs, _) = client
        .allocations(&opts)
        .await
        .map_err(|e| api_error("querying allocations", e))?;
    Ok(narrow(allocs, prefix, |a| &a.id))
}

pub async fn status(client: &Client, args: StatusArgs) -> anyhow::Result<i32> {
    let verbose = args.verbose;
    let mut matches = matching(client, &args.alloc).await?;
    let id = match matches.len() {
        0 => {
            eprintln!("No allocation(s) with prefix or ID {:?} found", args.alloc);
            return Ok(1);
        }
        1 => matches.remove(0).id,
        _ => {
            eprintln!(
                "Prefix matched multiple allocations\n\n{}",
                alloc_table(&matches, verbose, now_nanos(), AllocTableKind::Any)
            );
            return Ok(1);
        }
    };
    let alloc = match client.allocation(&id).await {
        Ok((a, _)) => a,
        Err(e) if e.is_not_found() => {
            eprintln!("No allocation(s) with prefix or ID {:?} found", args.alloc);
            return Ok(1);
        }
        Err(e) => return Err(api_error("querying allocation", e)),
    };
    print!("{}", render_alloc(&alloc, verbose, now_nanos()));
    Ok(0)
}

/// The whole `alloc status` page.
pub fn render_alloc(a: &Allocation, verbose: bool, now: i64) -> String {
    let mut pairs = vec![
        ("ID", id(&a.id, verbose).to_string()),
        ("Eval ID", id(&a.eval_id, verbose).to_string()),
        ("Name", a.name.clone()),
        ("Node ID", id(&a.node_id, verbose).to_string()),
        ("Node Name", a.node_name.clone()),
        ("Job ID", a.job_id.clone()),
        ("Job Version", a.job_version().to_string()),
        ("Client Status", a.client_status.clone()),
        ("Client Description", or_none(&a.client_description)),
        ("Desired Status", a.desired_status.clone()),
        ("Desired Description", or_none(&a.desired_description)),
        ("Created", time_cell(a.create_time, verbose, now)),
        ("Modified", time_cell(a.modify_time, verbose, now)),
    ];
    if !a.previous_allocation.is_empty() {
        pairs.push((
            "Rescheduled Alloc ID",
            id(&a.previous_allocation, verbose).to_string(),
        ));
    }
    if !a.next_allocation.is_empty() {
        pairs.push((
            "Replacement Alloc ID",
            id(&a.next_allocation, verbose).to_string(),
        ));
    }
    if !a.followup_eval_id.is_empty() {
        pairs.push((
            "Follow-up Eval ID",
            id(&a.followup_eval_id, verbose).to_string(),
        ));
    }
    let mut out = kv(&pairs);
    out.push('\n');
    for (name, state) in &a.task_states {
        let st = if state.state.is_empty() {
            api::TASK_STATE_PENDING
        } else {
            &state.state
        };
        out.push_str(&format!("\nTask {name:?} is {st:?}\n"));
        if state.restarts > 0 {
            out.push_str(&format!("Restarts: {}\n", state.restarts));
        }
        out.push_str("Recent Events:\n");
        let rows = state
            .events
            .iter()
            .rev()
            .map(|e| vec![rfc3339(e.time), e.event_type.clone(), event_description(e)])
            .collect();
        out.push_str(&table(&["Time", "Type", "Description"], rows));
        out.push('\n');
    }
    out
}

/// What a task event says: its display message, else a sentence built from its fields.
pub fn event_description(e: &TaskEvent) -> String {
    if !e.display_message.is_empty() {
        return e.display_message.clone();
    }
    let exit = || {
        let mut s = format!("Exit Code: {}", e.exit_code);
        if e.signal != 0 {
            s.push_str(&format!(", Signal: {}", e.signal));
        }
        s
    };
    let text = match e.event_type.as_str() {
        "Terminated" => exit(),
        "Restarting" if !e.restart_reason.is_empty() => e.restart_reason.clone(),
        "Driver Failure" | "Failed Validation" if !e.driver_error.is_empty() => {
            e.driver_error.clone()
        }
        _ if !e.message.is_empty() => e.message.clone(),
        _ if !e.driver_error.is_empty() => e.driver_error.clone(),
        "Started" => "Task started by client".to_string(),
        "Received" => "Task received by client".to_string(),
        "Killed" => "Task successfully killed".to_string(),
        _ => String::new(),
    };
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::TaskState;

    const S: i64 = 1_000_000_000;

    fn alloc() -> Allocation {
        let mut a = Allocation {
            id: "0af996ed-1111-2222-3333-444444444444".into(),
            eval_id: "be9bde98-1111-2222-3333-444444444444".into(),
            name: "example.cache[0]".into(),
            node_id: "43c0b14e-1111-2222-3333-444444444444".into(),
            node_name: "n1".into(),
            job_id: "example".into(),
            client_status: "running".into(),
            desired_status: "run".into(),
            create_time: 100 * S,
            modify_time: 110 * S,
            ..Default::default()
        };
        a.task_states.insert(
            "redis".into(),
            TaskState {
                state: "running".into(),
                events: vec![
                    TaskEvent {
                        event_type: "Received".into(),
                        time: 100 * S,
                        ..Default::default()
                    },
                    TaskEvent {
                        event_type: "Started".into(),
                        time: 101 * S,
                        display_message: "Task started by client".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        );
        a
    }

    #[test]
    fn alloc_page_has_header_and_newest_events_first() {
        let out = render_alloc(&alloc(), false, 120 * S);
        assert!(out.starts_with("ID                  = 0af996ed\n"));
        assert!(out.contains("Client Description  = <none>\n"));
        assert!(out.contains("Created             = 20s ago\n"));
        assert!(out.contains("\nTask \"redis\" is \"running\"\nRecent Events:\nTime"));
        let started = out.find("Started").unwrap();
        let received = out.find("Received").unwrap();
        assert!(started < received, "{out}");
    }

    #[test]
    fn terminated_events_show_the_exit_code() {
        let e = TaskEvent {
            event_type: "Terminated".into(),
            exit_code: 137,
            signal: 9,
            ..Default::default()
        };
        assert_eq!(event_description(&e), "Exit Code: 137, Signal: 9");
    }

    #[test]
    fn job_tables_show_nodes_and_node_tables_show_jobs() {
        let stub = AllocationListStub::from_alloc(&alloc());
        let job = alloc_table(
            std::slice::from_ref(&stub),
            false,
            120 * S,
            AllocTableKind::Job,
        );
        assert!(job.starts_with("ID        Node ID   Task Group"), "{job}");
        let node = alloc_table(&[stub], false, 120 * S, AllocTableKind::Node);
        assert!(node.starts_with("ID        Job ID   Task Group"), "{node}");
        assert!(node.contains("running  20s ago  10s ago"), "{node}");
    }
}
