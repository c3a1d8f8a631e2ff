//! Scheduling workers: take an evaluation from the broker, run the pure scheduler on a
//! snapshot, and hand the plan to the plan applier.

use crate::fsm::Command;
use crate::plan_apply::PlanRequest;
use crate::{now_nanos, Server, WriteError};
use api::Evaluation;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const MAX_ATTEMPTS: u32 = 5;

pub async fn run(server: Arc<Server>, worker: usize) {
    loop {
        let eval = server.broker.dequeue().await;
        tracing::debug!(worker, eval_id = %eval.id, job = %eval.job_id, "processing evaluation");
        match process(&server, &eval).await {
            Ok(()) => server.broker.ack(&eval.id),
            Err(e) => {
                tracing::warn!(eval_id = %eval.id, error = %e, "evaluation failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if server.broker.enabled() {
                    server.broker.nack(eval);
                }
            }
        }
    }
}

fn seed_for(eval: &Evaluation, attempt: u32) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    eval.id.hash(&mut h);
    attempt.hash(&mut h);
    h.finish()
}

async fn process(server: &Arc<Server>, eval: &Arc<Evaluation>) -> Result<(), WriteError> {
    let mut min_index = eval.modify_index;
    let config = scheduler::SchedulerConfig::default();
    for attempt in 0..MAX_ATTEMPTS {
        let state = server
            .wait_for_index(min_index, Duration::from_secs(5))
            .await;
        // The scheduler has no clock: "now" (for reschedule delays) comes in the eval.
        let mut input = (**eval).clone();
        input.modify_time = now_nanos();
        let mut plan = match scheduler::schedule(&*state, &input, &config, seed_for(eval, attempt))
        {
            Ok(p) => p,
            Err(e) => {
                let mut failed = (**eval).clone();
                failed.status = api::EVAL_STATUS_FAILED.into();
                failed.status_description = format!("scheduler error: {e}");
                failed.modify_time = now_nanos();
                server
                    .write(Command::UpsertEvals {
                        evals: vec![failed],
                    })
                    .await?;
                return Ok(());
            }
        };
        let now = now_nanos();
        let mut update = (**eval).clone();
        update.status = api::EVAL_STATUS_COMPLETE.into();
        update.status_description.clear();
        update.failed_tg_allocs = plan.failed_tg_allocs.clone();
        update.queued_allocations = plan.queued_allocations.clone();
        update.snapshot_index = state.index;
        update.modify_time = now;
        if eval.status == api::EVAL_STATUS_BLOCKED {
            // Still unplaceable: the blocked eval stays blocked instead of spawning another.
            if plan
                .create_evals
                .iter()
                .any(|e| e.status == api::EVAL_STATUS_BLOCKED)
            {
                plan.create_evals
                    .retain(|e| e.status != api::EVAL_STATUS_BLOCKED);
                update.status = api::EVAL_STATUS_BLOCKED.into();
            }
        } else if let Some(b) = plan
            .create_evals
            .iter()
            .find(|e| e.status == api::EVAL_STATUS_BLOCKED)
        {
            update.blocked_eval = b.id.clone();
        }
        for e in &mut plan.create_evals {
            e.create_time = now;
            e.modify_time = now;
        }
        // Older blocked evals of this job are superseded by this one's outcome.
        for old in state.evals_for_job(&eval.namespace, &eval.job_id) {
            if old.status == api::EVAL_STATUS_BLOCKED && old.id != eval.id {
                let mut c = (*old).clone();
                c.status = api::EVAL_STATUS_CANCELED.into();
                c.status_description = format!("superseded by evaluation {}", eval.id);
                c.modify_time = now;
                plan.create_evals.push(c);
            }
        }
        if plan.is_no_op() {
            server
                .write(Command::UpsertEvals {
                    evals: vec![update],
                })
                .await?;
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        server
            .plans
            .send(PlanRequest {
                plan,
                eval_update: Some(update),
                respond: tx,
            })
            .await
            .map_err(|_| WriteError::Raft("plan applier stopped".into()))?;
        let result = rx
            .await
            .map_err(|_| WriteError::Raft("plan applier dropped the plan".into()))??;
        if result.refresh_index == 0 {
            return Ok(());
        }
        tracing::debug!(eval_id = %eval.id, rejected = ?result.rejected_nodes, "plan partly refused; re-planning");
        min_index = result.refresh_index;
    }
    let mut failed = (**eval).clone();
    failed.status = api::EVAL_STATUS_FAILED.into();
    failed.status_description = "plan kept being refused by the plan applier".into();
    failed.modify_time = now_nanos();
    server
        .write(Command::UpsertEvals {
            evals: vec![failed],
        })
        .await?;
    Ok(())
}
