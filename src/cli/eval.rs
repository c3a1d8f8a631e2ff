//! `drover eval status`: one evaluation, and why its placements failed if they did.

use crate::cli::format::{api_error, id, kv, now_nanos, or_none, table, time_cell};
use crate::cli::lookup::{self, Kind};
use crate::cli::monitor::render_metric;
use api::{Client, Evaluation};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// An evaluation ID or a prefix of one.
    #[arg(value_name = "EVAL")]
    pub eval: String,
}

/// Evaluations whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<Evaluation>> {
    let ns = client.namespace();
    lookup::matching(
        Kind::Eval,
        prefix,
        |o| async move {
            let (evals, meta) = client.evaluations(&o).await?;
            let evals = evals
                .into_iter()
                .filter(|e| lookup::in_namespace(ns, &e.namespace))
                .collect();
            Ok((evals, meta))
        },
        |e| &e.id,
    )
    .await
}

/// The evaluation table listing the evaluations a prefix matched.
fn eval_table(evals: &[Evaluation], verbose: bool) -> String {
    let rows = evals
        .iter()
        .map(|e| {
            vec![
                id(&e.id, verbose).to_string(),
                e.priority.to_string(),
                e.triggered_by.clone(),
                e.job_id.clone(),
                e.status.clone(),
                (!e.failed_tg_allocs.is_empty()).to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "Priority",
            "Triggered By",
            "Job ID",
            "Status",
            "Placement Failures",
        ],
        rows,
    )
}

pub async fn status(client: &Client, args: StatusArgs) -> anyhow::Result<i32> {
    let verbose = args.verbose;
    let matches = matching(client, &args.eval).await?;
    let table = |m: &[Evaluation]| eval_table(m, verbose);
    let Some(eval) = lookup::one_or_tell(Kind::Eval, &args.eval, matches, table) else {
        return Ok(1);
    };
    // The list may carry a trimmed copy; the single read is authoritative.
    let eval = match client.evaluation(&eval.id).await {
        Ok((e, _)) => e,
        Err(e) if e.is_not_found() => eval,
        Err(e) => return Err(api_error("querying evaluation", e)),
    };
    print!("{}", render_eval(&eval, verbose, now_nanos()));
    Ok(0)
}

pub fn render_eval(e: &Evaluation, verbose: bool, now: i64) -> String {
    let mut pairs = vec![
        ("ID", id(&e.id, verbose).to_string()),
        ("Create Time", time_cell(e.create_time, verbose, now)),
        ("Modify Time", time_cell(e.modify_time, verbose, now)),
        ("Status", e.status.clone()),
        ("Status Description", or_none(&e.status_description)),
        ("Type", e.eval_type.clone()),
        ("TriggeredBy", e.triggered_by.clone()),
        ("Job ID", e.job_id.clone()),
    ];
    if !e.node_id.is_empty() {
        pairs.push(("Node ID", id(&e.node_id, verbose).to_string()));
    }
    pairs.push(("Priority", e.priority.to_string()));
    pairs.push((
        "Placement Failures",
        (!e.failed_tg_allocs.is_empty()).to_string(),
    ));
    let mut out = kv(&pairs);
    out.push('\n');
    if !e.failed_tg_allocs.is_empty() {
        out.push_str("\nFailed Placements\n");
        for (group, m) in &e.failed_tg_allocs {
            let n = m.coalesced_failures + 1;
            let noun = if n == 1 { "allocation" } else { "allocations" };
            out.push_str(&format!(
                "Task Group {group:?} (failed to place {n} {noun}):\n"
            ));
            for line in render_metric(m, "  ") {
                out.push_str(&line);
                out.push('\n');
            }
        }
        if !e.blocked_eval.is_empty() {
            out.push_str(&format!(
                "\nEvaluation {:?} waiting for additional capacity to place remainder\n",
                id(&e.blocked_eval, verbose)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_page_explains_failed_placements() {
        let mut e = Evaluation {
            id: "11111111-2222".into(),
            status: "complete".into(),
            eval_type: "service".into(),
            triggered_by: "job-register".into(),
            job_id: "web".into(),
            priority: 50,
            blocked_eval: "99999999-0000".into(),
            ..Default::default()
        };
        e.failed_tg_allocs.insert(
            "g".into(),
            api::AllocMetric {
                nodes_evaluated: 2,
                dimension_exhausted: [("cpu".to_string(), 2)].into(),
                ..Default::default()
            },
        );
        let out = render_eval(&e, false, 0);
        assert!(out.contains("Placement Failures = true\n"), "{out}");
        assert!(out.contains(
            "Task Group \"g\" (failed to place 1 allocation):\n  * Dimension \"cpu\" exhausted on 2 nodes\n"
        ));
        assert!(out.contains("Evaluation \"99999999\" waiting for additional capacity"));
    }
}
