//! Operator commands: the scheduler configuration and garbage collection.

use super::services::drop_alloc_services;
use crate::state::StateWriter;

/// `Command::SetSchedulerConfig`: store it unless `cas` no longer matches (the caller
/// reads the stored modify index back to tell whether it took).
pub(super) fn set_scheduler_config(
    w: &mut StateWriter,
    config: api::SchedulerConfiguration,
    cas: Option<u64>,
) {
    if let Some(cas) = cas {
        let current = if w.scheduler_config_set() {
            w.scheduler_config().modify_index
        } else {
            0
        };
        if current != cas {
            return;
        }
    }
    w.set_scheduler_config(config);
}

/// `Command::GarbageCollect`: the leader chose what to remove from a snapshot; each object
/// is checked again here, so one that came back to life meanwhile (a job registered again,
/// an evaluation re-queued) stays.
pub(super) fn garbage_collect(
    w: &mut StateWriter,
    jobs: Vec<(String, String)>,
    evals: Vec<String>,
    allocs: Vec<String>,
    deployments: Vec<String>,
) {
    for id in allocs {
        let terminal = w
            .alloc_table()
            .get(&id)
            .is_some_and(|a| crate::gc::alloc_collectable(a));
        if terminal {
            drop_alloc_services(w, &id);
            w.delete_alloc(&id);
        }
    }
    for id in evals {
        let terminal = w
            .eval_table()
            .get(&id)
            .is_some_and(|e| crate::gc::eval_terminal(e));
        if terminal {
            w.delete_eval(&id);
        }
    }
    for (ns, id) in jobs {
        let dead = w.job(&ns, &id).is_some_and(|j| crate::gc::job_dead(&j))
            && w.allocs_for_job(&ns, &id).is_empty()
            && w.evals_for_job(&ns, &id).is_empty();
        if dead {
            w.delete_job(&ns, &id);
            w.delete_job_deployments(&ns, &id);
        }
    }
    for id in deployments {
        w.delete_deployment(&id);
    }
}
