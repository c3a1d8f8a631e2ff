//! Scheduling workers: take an evaluation from the broker, run the pure scheduler on a
//! snapshot, and hand the plan to the plan applier.

use crate::broker::Lease;
use crate::fsm::Command;
use crate::plan_apply::{AppliedPlan, PlanRequest};
use crate::state::StateStore;
use crate::{now_nanos, Server, WriteError};
use api::Evaluation;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Re-plans in a row that commit nothing before the evaluation is given up and followed
/// up later (Nomad's `maxServiceScheduleAttempts`). A re-plan that commits at least one
/// allocation resets the count, so a worker that loses races but keeps placing goes on.
pub const MAX_ATTEMPTS_WITHOUT_PROGRESS: u32 = 5;
/// A bound on re-plans of one evaluation however much progress each makes.
pub const MAX_ATTEMPTS: u32 = 200;
/// The trigger of the evaluation that retries a failed one (Nomad's word).
pub const TRIGGER_FAILED_FOLLOW_UP: &str = "failed-follow-up";
/// A failed evaluation's follow-up runs after this delay plus a random part of up to
/// [`FOLLOW_UP_JITTER`], so many failures at once do not come back at once. Nomad waits
/// one minute plus up to five; Drover's failures are contention, so seconds suffice.
pub const FOLLOW_UP_DELAY: Duration = Duration::from_secs(5);
pub const FOLLOW_UP_JITTER: Duration = Duration::from_secs(5);

pub async fn run(server: Arc<Server>, worker: usize) {
    loop {
        wait_while_paused(&server).await;
        let lease = server.broker.dequeue().await;
        if server.snapshot().scheduler_config().pause_eval_broker {
            // Paused while this worker waited: hand it back untouched.
            server.broker.nack(lease);
            continue;
        }
        tracing::debug!(worker, eval_id = %lease.id, job = %lease.job_id, "processing evaluation");
        match process(&server, &lease).await {
            Ok(()) => server.broker.ack(&lease),
            Err(e) => {
                tracing::warn!(eval_id = %lease.id, error = %e, "evaluation failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                server.broker.nack(lease);
            }
        }
    }
}

/// Hold while the operator paused the eval broker (`PauseEvalBroker` in the scheduler
/// configuration): evaluations stay queued until it is lifted.
async fn wait_while_paused(server: &Server) {
    let mut rx = server.state.clone();
    while rx.borrow_and_update().scheduler_config().pause_eval_broker {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// How long to wait before re-planning after `n` refusals in a row that committed
/// nothing: exponential from 20 ms up to 1 s, with full jitter so that workers that
/// collided do not collide again in step.
pub fn backoff(n: u32, rng: &mut impl Rng) -> Duration {
    let cap = Duration::from_millis(20)
        .saturating_mul(1 << n.min(6))
        .min(Duration::from_secs(1));
    let ms = cap.as_millis() as u64;
    Duration::from_millis(ms / 2 + rng.gen_range(0..=ms / 2))
}

/// The evaluation that retries `failed` after a delay, as Nomad's leader creates for
/// evaluations it reaps: same job, `TriggeredBy = "failed-follow-up"`, pending until
/// `WaitUntil`.
pub fn failed_follow_up(failed: &Evaluation, now: i64, rng: &mut impl Rng) -> Evaluation {
    let jitter = rng.gen_range(0..=FOLLOW_UP_JITTER.as_nanos() as i64);
    Evaluation {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: failed.namespace.clone(),
        priority: failed.priority,
        eval_type: failed.eval_type.clone(),
        triggered_by: TRIGGER_FAILED_FOLLOW_UP.into(),
        job_id: failed.job_id.clone(),
        job_modify_index: failed.job_modify_index,
        status: api::EVAL_STATUS_PENDING.into(),
        status_description: format!("retries failed evaluation {}", failed.id),
        wait_until: now + FOLLOW_UP_DELAY.as_nanos() as i64 + jitter,
        previous_eval: failed.id.clone(),
        create_time: now,
        modify_time: now,
        ..Default::default()
    }
}

/// Marks `eval` failed with `why` and, in the same write, creates its follow-up, so a
/// failed evaluation is never left without one.
fn fail_with_follow_up(eval: &Evaluation, why: &str, queued: &QueuedAllocs) -> Vec<Evaluation> {
    let now = now_nanos();
    let follow = failed_follow_up(eval, now, &mut rand::thread_rng());
    let wait = Duration::from_nanos((follow.wait_until - now).max(0) as u64);
    let mut failed = eval.clone();
    failed.status = api::EVAL_STATUS_FAILED.into();
    failed.status_description = format!(
        "{why}; follow-up evaluation {} retries in {:.1}s",
        follow.id,
        wait.as_secs_f64()
    );
    failed.next_eval = follow.id.clone();
    failed.queued_allocations = queued.clone();
    failed.modify_time = now;
    vec![failed, follow]
}

type QueuedAllocs = std::collections::BTreeMap<String, u64>;

/// The placement algorithm the operator chose (`/v1/operator/scheduler/configuration`),
/// read from the state each plan is made on, so a change applies to the next evaluation.
pub fn scheduler_config(state: &StateStore) -> scheduler::SchedulerConfig {
    let algorithm = if state.scheduler_config().spreads() {
        scheduler::Algorithm::Spread
    } else {
        scheduler::Algorithm::BinPack
    };
    scheduler::SchedulerConfig { algorithm }
}

/// Run the scheduler on a snapshot. Placement is CPU-bound (thousands of nodes), so it
/// runs off the async runtime, as `job plan` does, and heartbeats and HTTP are not
/// starved meanwhile.
async fn schedule_blocking(
    state: impl scheduler::State + Send + 'static,
    eval: Evaluation,
    config: scheduler::SchedulerConfig,
    seed: u64,
) -> Result<api::Plan, String> {
    tokio::task::spawn_blocking(move || {
        scheduler::schedule(&state, &eval, &config, seed).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the scheduler did not finish: {e}")))
}

/// Schedule one evaluation until its plan is committed. One loop on purpose (hence its
/// length): each attempt re-reads state at the applier's refresh index, switches from
/// bin-packing to spreading after a fruitless refusal, and gives up (failed + follow-up)
/// after too many attempts; splitting it would scatter that retry state.
async fn process(server: &Arc<Server>, lease: &Lease) -> Result<(), WriteError> {
    let eval = &lease.eval;
    let mut min_index = eval.modify_index;
    // Bin-packing sends every worker to the same fullest nodes, so a small plan racing
    // big ones can lose every time. After a refusal that placed nothing, the re-plan
    // spreads instead: it aims at the emptiest nodes, where the packing workers are not.
    let spreading = scheduler::SchedulerConfig {
        algorithm: scheduler::Algorithm::Spread,
    };
    let mut without_progress = 0;
    let mut last_queued = QueuedAllocs::new();
    let mut last_refusal = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        // A refused plan is re-planned only from a state that holds what the applier
        // committed meanwhile (the refresh index), never from the stale snapshot.
        let state = server
            .wait_for_index(min_index, Duration::from_secs(5))
            .await;
        if state.index() < min_index {
            return Err(WriteError::Raft(format!(
                "the state did not reach index {min_index} within 5s; retrying evaluation {}",
                eval.id
            )));
        }
        // Plan beside what the applier has queued for other jobs, as if committed.
        let view = server
            .plans_in_flight
            .view(|| server.snapshot(), &eval.namespace, &eval.job_id);
        let state = view.state.clone();
        // The scheduler has no clock: "now" (for reschedule delays) comes in the eval.
        let mut input: Evaluation = (**eval).clone();
        input.modify_time = now_nanos();
        // A fresh seed per attempt: a new node order, so racing workers spread out.
        let seed: u64 = rand::random();
        tracing::trace!(eval_id = %eval.id, attempt, seed, "scheduling");
        let config = if without_progress == 0 {
            scheduler_config(&state)
        } else {
            spreading.clone()
        };
        let mut plan = match schedule_blocking(view, input, config, seed).await {
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
        last_queued = plan.queued_allocations.clone();
        let update = settle(eval, &mut plan, &state, now);
        if plan.is_no_op() {
            server
                .write(Command::UpsertEvals {
                    evals: vec![update],
                })
                .await?;
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let in_flight = server
            .plans_in_flight
            .enter(&eval.namespace, &eval.job_id, &plan);
        server
            .plans
            .send(PlanRequest {
                plan,
                eval_update: Some(update),
                eval_token: lease.token,
                respond: tx,
            })
            .await
            .map_err(|_| WriteError::Raft("plan applier stopped".into()))?;
        let applied: AppliedPlan = rx
            .await
            .map_err(|_| WriteError::Raft("plan applier dropped the plan".into()))??;
        drop(in_flight);
        if applied.result.refresh_index == 0 {
            return Ok(());
        }
        last_refusal = applied.refusal_summary().unwrap_or_default();
        min_index = applied.result.refresh_index;
        if applied.placed > 0 {
            without_progress = 0;
            tracing::debug!(eval_id = %eval.id, placed = applied.placed, refused = applied.refusals.len(), "plan partly refused; re-planning the rest");
            continue;
        }
        without_progress += 1;
        if without_progress >= MAX_ATTEMPTS_WITHOUT_PROGRESS {
            let why = format!(
                "plan kept being refused by the plan applier ({without_progress} attempts in a row placed nothing): {last_refusal}"
            );
            return give_up(server, eval, &why, &last_queued).await;
        }
        let wait = backoff(without_progress, &mut rand::thread_rng());
        tracing::debug!(eval_id = %eval.id, attempt, ?wait, "plan refused and nothing placed; backing off: {last_refusal}");
        tokio::time::sleep(wait).await;
    }
    let why =
        format!("plan was still partly refused after {MAX_ATTEMPTS} attempts: {last_refusal}");
    give_up(server, eval, &why, &last_queued).await
}

/// The evaluation's own update for a plan computed from `state`: complete (or still
/// blocked), with what the plan could not place; blocked evaluations of the same job that
/// this one supersedes are cancelled in the same plan.
fn settle(eval: &Evaluation, plan: &mut api::Plan, state: &StateStore, now: i64) -> Evaluation {
    let mut update = eval.clone();
    update.status = api::EVAL_STATUS_COMPLETE.into();
    update.status_description.clear();
    update.failed_tg_allocs = plan.failed_tg_allocs.clone();
    update.queued_allocations = plan.queued_allocations.clone();
    update.snapshot_index = state.index();
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
    update
}

async fn give_up(
    server: &Arc<Server>,
    eval: &Evaluation,
    why: &str,
    queued: &QueuedAllocs,
) -> Result<(), WriteError> {
    let evals = fail_with_follow_up(eval, why, queued);
    tracing::warn!(eval_id = %eval.id, job = %eval.job_id, follow_up = %evals[1].id, "evaluation failed: {why}");
    server.write(Command::UpsertEvals { evals }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 1..20 {
            let d = backoff(n, &mut rng);
            let cap = Duration::from_millis(20 * (1u64 << n.min(6))).min(Duration::from_secs(1));
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {n}: {d:?} outside {:?}..={cap:?}",
                cap / 2
            );
        }
        let many: std::collections::HashSet<_> = (0..50).map(|_| backoff(3, &mut rng)).collect();
        assert!(many.len() > 1, "no jitter: {many:?}");
    }

    #[test]
    fn a_failed_evaluation_gets_a_delayed_follow_up_in_the_same_write() {
        let eval = Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            priority: 50,
            eval_type: "service".into(),
            status: api::EVAL_STATUS_PENDING.into(),
            ..Default::default()
        };
        let queued = QueuedAllocs::from([("g".to_string(), 3)]);
        let before = now_nanos();
        let evals = fail_with_follow_up(&eval, "plan kept being refused", &queued);
        let (failed, follow) = (&evals[0], &evals[1]);
        assert_eq!(failed.status, api::EVAL_STATUS_FAILED);
        assert_eq!(failed.next_eval, follow.id);
        assert_eq!(failed.queued_allocations, queued);
        assert!(failed
            .status_description
            .starts_with("plan kept being refused"));
        assert!(failed.status_description.contains(&follow.id));
        assert_eq!(follow.status, api::EVAL_STATUS_PENDING);
        assert_eq!(follow.triggered_by, "failed-follow-up");
        assert_eq!(follow.previous_eval, "e1");
        assert_eq!(follow.job_id, "web");
        assert!(follow.wait_until >= before + FOLLOW_UP_DELAY.as_nanos() as i64);
        assert!(
            follow.wait_until
                <= now_nanos() + (FOLLOW_UP_DELAY + FOLLOW_UP_JITTER).as_nanos() as i64
        );
    }
}
