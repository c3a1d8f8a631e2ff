//! Group commit of agents' status reports (`PUT /v1/internal/node/:id/allocs`).
//!
//! Thousands of agents each report their allocations' states; one Raft entry per report
//! makes the log, replication and every follower's apply pay per node. Reports go through
//! one task instead: while one entry is being committed, the reports that arrive queue up,
//! and the next entry carries all of them (up to [`MAX_UPDATES`] allocation updates). A
//! lone report is written at once, so a quiet cluster adds no latency; each report is
//! answered only once the entry holding it has committed and applied.

use crate::fsm::Command;
use crate::{Server, WriteError};
use api::{AllocClientUpdate, Evaluation};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// At most this many allocation updates in one entry (a bound on its size).
pub const MAX_UPDATES: usize = 5_000;

/// One request's reports and where its answer goes: the index of the entry that
/// carried them, or why it did not commit.
pub struct Report {
    pub updates: Vec<AllocClientUpdate>,
    pub evals: Vec<Evaluation>,
    pub now: i64,
    pub respond: oneshot::Sender<Result<u64, WriteError>>,
}

/// Writes the reports it receives, as many per entry as have queued.
pub async fn run(server: Arc<Server>, mut rx: mpsc::Receiver<Report>) {
    while let Some(first) = rx.recv().await {
        let mut size = first.updates.len();
        let mut batch = vec![first];
        while size < MAX_UPDATES {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.updates.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let (cmd, waiters) = merge(batch);
        ::metrics::histogram!("nomad.client.update_batch_size").record(size as f64);
        let res = server.write(cmd).await.map(|r| r.index);
        for w in waiters {
            let _ = w.send(res.clone());
        }
    }
}

/// One `ClientAllocUpdate` from many reports: their updates in arrival order, and one
/// evaluation per job (two nodes' reports about one job need one scheduling pass).
fn merge(batch: Vec<Report>) -> (Command, Vec<oneshot::Sender<Result<u64, WriteError>>>) {
    let mut updates = Vec::new();
    let mut evals = Vec::new();
    let mut jobs = BTreeSet::new();
    let mut waiters = Vec::with_capacity(batch.len());
    let mut now = 0;
    for r in batch {
        updates.extend(r.updates);
        for e in r.evals {
            if jobs.insert((e.namespace.clone(), e.job_id.clone())) {
                evals.push(e);
            }
        }
        now = now.max(r.now);
        waiters.push(r.respond);
    }
    (
        Command::ClientAllocUpdate {
            updates,
            evals,
            now,
        },
        waiters,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        ids: &[&str],
        jobs: &[&str],
        now: i64,
    ) -> (Report, oneshot::Receiver<Result<u64, WriteError>>) {
        let (tx, rx) = oneshot::channel();
        let r = Report {
            updates: ids
                .iter()
                .map(|id| AllocClientUpdate {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
            evals: jobs
                .iter()
                .map(|j| Evaluation {
                    id: format!("eval-{j}-{now}"),
                    namespace: "default".into(),
                    job_id: j.to_string(),
                    ..Default::default()
                })
                .collect(),
            now,
            respond: tx,
        };
        (r, rx)
    }

    #[test]
    fn merged_reports_keep_every_update_in_order_and_one_evaluation_per_job() {
        let (a, _) = report(&["a1", "a2"], &["web"], 5);
        let (b, _) = report(&["b1"], &["web", "db"], 7);
        let (cmd, waiters) = merge(vec![a, b]);
        assert_eq!(waiters.len(), 2);
        let Command::ClientAllocUpdate {
            updates,
            evals,
            now,
        } = cmd
        else {
            panic!("not a client update");
        };
        let ids: Vec<_> = updates.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2", "b1"]);
        let jobs: Vec<_> = evals.iter().map(|e| e.job_id.as_str()).collect();
        assert_eq!(jobs, ["web", "db"]);
        assert_eq!(now, 7);
    }
}
