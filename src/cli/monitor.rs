//! The evaluation monitor behind `job run` and `job stop`: follows one evaluation (and the
//! evaluations it hands over to) until the scheduler is done with it, printing what it
//! sees the way Nomad does, and decides the exit code: 0 when everything was placed, 2 when
//! placements failed, 1 when the evaluation failed or could not be followed.
//!
//! [`EvalWatch`] turns successive observations into [`MonitorEvent`]s and the `render_*`
//! functions turn those into lines; both are pure, so the output is tested without a
//! server. [`monitor`] is the polling loop around them.

use crate::cli::format::{api_error, id, now_rfc3339};
use api::{AllocMetric, AllocationListStub, Client, Evaluation};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the monitor follows evaluations before it gives up.
pub const MONITOR_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// How often it asks the server again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(300);
/// How long a just-created evaluation may stay invisible (404) before that is an error.
const NOT_FOUND_GRACE: Duration = Duration::from_secs(3);

/// Something worth a line while an evaluation is followed.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorEvent {
    TriggeredByJob(String),
    TriggeredByNode(String),
    AllocCreated {
        alloc_id: String,
        node_id: String,
        group: String,
    },
    /// An existing allocation updated in place by this evaluation.
    AllocModified {
        alloc_id: String,
        node_id: String,
        group: String,
    },
    AllocStatusChanged {
        alloc_id: String,
        from: String,
        to: String,
        description: String,
    },
    EvalStatusChanged {
        from: String,
        to: String,
    },
}

/// What has been seen of one evaluation so far.
#[derive(Debug, Clone)]
pub struct EvalWatch {
    status: String,
    announced_trigger: bool,
    /// Allocation id -> the client status last seen.
    allocs: BTreeMap<String, String>,
}

impl Default for EvalWatch {
    fn default() -> Self {
        // Every evaluation is created pending, so the first status we see that is not
        // pending is a change worth printing.
        EvalWatch {
            status: api::EVAL_STATUS_PENDING.to_string(),
            announced_trigger: false,
            allocs: BTreeMap::new(),
        }
    }
}

impl EvalWatch {
    /// What changed since the last observation, in the order Nomad prints it: the trigger
    /// (once), new allocations, allocation status changes, then the evaluation's status.
    pub fn observe(
        &mut self,
        eval: &Evaluation,
        allocs: &[AllocationListStub],
    ) -> Vec<MonitorEvent> {
        let mut out = Vec::new();
        if !self.announced_trigger {
            self.announced_trigger = true;
            if !eval.node_id.is_empty() {
                out.push(MonitorEvent::TriggeredByNode(eval.node_id.clone()));
            } else if !eval.job_id.is_empty() {
                out.push(MonitorEvent::TriggeredByJob(eval.job_id.clone()));
            }
        }
        let mut sorted: Vec<&AllocationListStub> = allocs.iter().collect();
        sorted.sort_by(|a, b| (a.create_index, &a.name).cmp(&(b.create_index, &b.name)));
        for a in sorted {
            match self.allocs.get(a.id.as_str()) {
                None => {
                    let (alloc_id, node_id, group) =
                        (a.id.clone(), a.node_id.clone(), a.task_group.clone());
                    // Allocations older than the evaluation were updated, not created.
                    if eval.create_index > 0
                        && a.create_index > 0
                        && a.create_index < eval.create_index
                    {
                        out.push(MonitorEvent::AllocModified {
                            alloc_id: alloc_id.to_string(),
                            node_id: node_id.to_string(),
                            group: group.to_string(),
                        });
                    } else {
                        out.push(MonitorEvent::AllocCreated {
                            alloc_id: alloc_id.to_string(),
                            node_id: node_id.to_string(),
                            group: group.to_string(),
                        });
                    }
                }
                Some(prev) if *prev != a.client_status && !a.client_status.is_empty() => {
                    out.push(MonitorEvent::AllocStatusChanged {
                        alloc_id: a.id.to_string(),
                        from: prev.clone(),
                        to: a.client_status.to_string(),
                        description: a.client_description.to_string(),
                    });
                }
                Some(_) => {}
            }
            self.allocs
                .insert(a.id.to_string(), a.client_status.to_string());
        }
        if !eval.status.is_empty() && eval.status != self.status {
            out.push(MonitorEvent::EvalStatusChanged {
                from: std::mem::replace(&mut self.status, eval.status.clone()),
                to: eval.status.clone(),
            });
        }
        out
    }
}

/// One event as a line, stamped with `ts`.
pub fn render_event(ev: &MonitorEvent, ts: &str, verbose: bool) -> String {
    let text = match ev {
        MonitorEvent::TriggeredByJob(job) => format!("Evaluation triggered by job {job:?}"),
        MonitorEvent::TriggeredByNode(node) => {
            format!("Evaluation triggered by node {:?}", id(node, verbose))
        }
        MonitorEvent::AllocCreated {
            alloc_id,
            node_id,
            group,
        } => format!(
            "Allocation {:?} created: node {:?}, group {group:?}",
            id(alloc_id, verbose),
            id(node_id, verbose)
        ),
        MonitorEvent::AllocModified {
            alloc_id,
            node_id,
            group,
        } => format!(
            "Allocation {:?} modified: node {:?}, group {group:?}",
            id(alloc_id, verbose),
            id(node_id, verbose)
        ),
        MonitorEvent::AllocStatusChanged {
            alloc_id,
            from,
            to,
            description,
        } => {
            let mut s = format!(
                "Allocation {:?} status changed: {from:?} -> {to:?}",
                id(alloc_id, verbose)
            );
            if !description.is_empty() {
                s.push_str(&format!(" ({description})"));
            }
            s
        }
        MonitorEvent::EvalStatusChanged { from, to } => {
            format!("Evaluation status changed: {from:?} -> {to:?}")
        }
    };
    format!("    {ts}: {text}")
}

/// The lines that close the watch of a terminal evaluation: the verdict, and for failed
/// placements the reasons per task group and the blocked evaluation that waits for room.
pub fn render_finish(eval: &Evaluation, ts: &str, verbose: bool) -> Vec<String> {
    let short = id(&eval.id, verbose);
    if eval.failed_tg_allocs.is_empty() {
        return vec![format!(
            "==> {ts}: Evaluation {short:?} finished with status {:?}",
            eval.status
        )];
    }
    let mut out = vec![format!(
        "==> {ts}: Evaluation {short:?} finished with status {:?} but failed to place all allocations:",
        eval.status
    )];
    for (group, metric) in &eval.failed_tg_allocs {
        let n = metric.coalesced_failures + 1;
        let noun = if n == 1 { "allocation" } else { "allocations" };
        out.push(format!(
            "    {ts}: Task Group {group:?} (failed to place {n} {noun}):"
        ));
        out.extend(render_metric(metric, "      "));
    }
    if !eval.blocked_eval.is_empty() {
        out.push(format!(
            "    {ts}: Evaluation {:?} waiting for additional capacity to place remainder",
            id(&eval.blocked_eval, verbose)
        ));
    }
    out
}

/// Why a task group could not be placed, one `* reason` line each, behind `prefix`.
pub fn render_metric(m: &AllocMetric, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    if m.nodes_evaluated == 0 {
        out.push("No nodes were eligible for evaluation".to_string());
    }
    for (dc, available) in &m.nodes_available {
        if *available == 0 {
            out.push(format!("No nodes are available in datacenter {dc:?}"));
        }
    }
    for (class, n) in &m.class_filtered {
        out.push(format!("Class {class:?} filtered {n} nodes"));
    }
    for (constraint, n) in &m.constraint_filtered {
        out.push(format!("Constraint {constraint:?} filtered {n} nodes"));
    }
    if m.nodes_exhausted > 0 {
        out.push(format!(
            "Resources exhausted on {} nodes",
            m.nodes_exhausted
        ));
    }
    for (class, n) in &m.class_exhausted {
        out.push(format!("Class {class:?} exhausted on {n} nodes"));
    }
    for (dim, n) in &m.dimension_exhausted {
        out.push(format!("Dimension {dim:?} exhausted on {n} nodes"));
    }
    out.into_iter().map(|l| format!("{prefix}* {l}")).collect()
}

/// Exit code for a finished evaluation: 0, 2 for failed placements, 1 for a failed or
/// cancelled evaluation.
pub fn exit_code(eval: &Evaluation) -> i32 {
    if eval.status == api::EVAL_STATUS_FAILED || eval.status == api::EVAL_STATUS_CANCELED {
        1
    } else if !eval.failed_tg_allocs.is_empty() {
        2
    } else {
        0
    }
}

/// Follow `eval_id` until it is terminal, printing as it goes; returns the exit code.
pub async fn monitor(client: &Client, eval_id: &str, verbose: bool) -> anyhow::Result<i32> {
    println!(
        "==> {}: Monitoring evaluation {:?}",
        now_rfc3339(),
        id(eval_id, verbose)
    );
    let deadline = Instant::now() + MONITOR_DEADLINE;
    let mut current = eval_id.to_string();
    loop {
        let eval = watch_one(client, &current, verbose, deadline).await?;
        let ts = now_rfc3339();
        for line in render_finish(&eval, &ts, verbose) {
            println!("{line}");
        }
        // A rolling update or a delayed reschedule hands over to a follow-up evaluation.
        if !eval.next_eval.is_empty() && exit_code(&eval) == 0 && eval.wait_until <= 0 {
            current = eval.next_eval.clone();
            println!(
                "==> {ts}: Monitoring next evaluation {:?}",
                id(&current, verbose)
            );
            continue;
        }
        return Ok(exit_code(&eval));
    }
}

async fn watch_one(
    client: &Client,
    eval_id: &str,
    verbose: bool,
    deadline: Instant,
) -> anyhow::Result<Evaluation> {
    let mut watch = EvalWatch::default();
    let first_seen = Instant::now();
    loop {
        let eval = match client.evaluation(eval_id).await {
            Ok((e, _)) => e,
            Err(e) if e.is_not_found() && first_seen.elapsed() < NOT_FOUND_GRACE => {
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            Err(e) if e.is_not_found() => {
                anyhow::bail!("No evaluation with id {eval_id:?} found")
            }
            Err(e) => return Err(api_error("reading evaluation", e)),
        };
        let allocs = client
            .evaluation_allocations(eval_id)
            .await
            .map(|(a, _)| a)
            .map_err(|e| api_error("reading allocations", e))?;
        let ts = now_rfc3339();
        for ev in watch.observe(&eval, &allocs) {
            println!("{}", render_event(&ev, &ts, verbose));
        }
        if eval.terminal() {
            return Ok(eval);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "Error: evaluation {:?} is still {:?} after {}; giving up (it may still finish: see `drover eval status {}`)",
                id(eval_id, verbose),
                eval.status,
                crate::cli::format::short_duration(MONITOR_DEADLINE.as_secs()),
                eval_id
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-01-02T15:04:05Z";

    fn eval(status: &str) -> Evaluation {
        Evaluation {
            id: "11111111-aaaa-bbbb-cccc-000000000000".into(),
            job_id: "web".into(),
            status: status.into(),
            create_index: 10,
            ..Default::default()
        }
    }

    fn alloc(id: &str, status: &str, create_index: u64) -> AllocationListStub {
        AllocationListStub {
            id: id.into(),
            node_id: "22222222-dddd-eeee-ffff-000000000000".into(),
            task_group: "cache".into(),
            client_status: status.into(),
            create_index,
            ..Default::default()
        }
    }

    #[test]
    fn first_observation_announces_trigger_allocs_and_status() {
        let mut w = EvalWatch::default();
        let lines: Vec<String> = w
            .observe(
                &eval("complete"),
                &[alloc("33333333-0000-0000-0000-000000000000", "pending", 11)],
            )
            .iter()
            .map(|e| render_event(e, TS, false))
            .collect();
        assert_eq!(
            lines,
            vec![
                format!("    {TS}: Evaluation triggered by job \"web\""),
                format!(
                    "    {TS}: Allocation \"33333333\" created: node \"22222222\", group \"cache\""
                ),
                format!("    {TS}: Evaluation status changed: \"pending\" -> \"complete\""),
            ]
        );
    }

    #[test]
    fn nothing_repeats_on_later_observations() {
        let mut w = EvalWatch::default();
        let a = [alloc("33333333-0000", "pending", 11)];
        w.observe(&eval("pending"), &a);
        assert!(w.observe(&eval("pending"), &a).is_empty());
        let b = [alloc("33333333-0000", "running", 11)];
        assert_eq!(
            w.observe(&eval("pending"), &b),
            vec![MonitorEvent::AllocStatusChanged {
                alloc_id: "33333333-0000".into(),
                from: "pending".into(),
                to: "running".into(),
                description: String::new(),
            }]
        );
    }

    #[test]
    fn older_allocations_are_modified_not_created() {
        let mut w = EvalWatch::default();
        let evs = w.observe(&eval("pending"), &[alloc("44444444-0000", "running", 3)]);
        assert!(matches!(evs[1], MonitorEvent::AllocModified { .. }));
    }

    #[test]
    fn verbose_prints_full_ids() {
        let ev = MonitorEvent::AllocCreated {
            alloc_id: "33333333-0000".into(),
            node_id: "22222222-1111".into(),
            group: "g".into(),
        };
        assert_eq!(
            render_event(&ev, TS, true),
            format!("    {TS}: Allocation \"33333333-0000\" created: node \"22222222-1111\", group \"g\"")
        );
    }

    #[test]
    fn complete_evaluation_finishes_with_exit_zero() {
        let e = eval("complete");
        assert_eq!(
            render_finish(&e, TS, false),
            vec![format!(
                "==> {TS}: Evaluation \"11111111\" finished with status \"complete\""
            )]
        );
        assert_eq!(exit_code(&e), 0);
    }

    #[test]
    fn failed_placements_list_reasons_and_exit_two() {
        let mut e = eval("complete");
        e.blocked_eval = "55555555-0000".into();
        e.failed_tg_allocs.insert(
            "cache".into(),
            AllocMetric {
                nodes_evaluated: 1,
                nodes_exhausted: 1,
                coalesced_failures: 2,
                dimension_exhausted: [("memory".to_string(), 1)].into(),
                constraint_filtered: [("${attr.kernel.name} = windows".to_string(), 2)].into(),
                ..Default::default()
            },
        );
        assert_eq!(
            render_finish(&e, TS, false),
            vec![
                format!("==> {TS}: Evaluation \"11111111\" finished with status \"complete\" but failed to place all allocations:"),
                format!("    {TS}: Task Group \"cache\" (failed to place 3 allocations):"),
                "      * Constraint \"${attr.kernel.name} = windows\" filtered 2 nodes".to_string(),
                "      * Resources exhausted on 1 nodes".to_string(),
                "      * Dimension \"memory\" exhausted on 1 nodes".to_string(),
                format!("    {TS}: Evaluation \"55555555\" waiting for additional capacity to place remainder"),
            ]
        );
        assert_eq!(exit_code(&e), 2);
    }

    #[test]
    fn no_eligible_nodes_is_said_plainly() {
        let m = AllocMetric::default();
        assert_eq!(
            render_metric(&m, "  "),
            vec!["  * No nodes were eligible for evaluation".to_string()]
        );
    }

    #[test]
    fn failed_evaluation_exits_one() {
        assert_eq!(exit_code(&eval("failed")), 1);
    }
}
