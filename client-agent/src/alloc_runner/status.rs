//! The allocation's client status: derived from its tasks' states, persisted locally and
//! queued for the servers when it changes.

use super::AllocRunner;
use crate::lifecycle::{self, Role};
use api::{AllocClientUpdate, TaskState};
use api::{
    ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED, ALLOC_CLIENT_PENDING, ALLOC_CLIENT_RUNNING,
    TASK_STATE_DEAD, TASK_STATE_PENDING,
};
use std::sync::Arc;

/// The client status of an allocation and its description, from its tasks' states:
/// failed if any task failed; complete once all are dead; pending while any task has
/// never started; running otherwise (a task waiting to be restarted counts as running).
pub fn client_status<'a>(
    tasks: impl IntoIterator<Item = &'a TaskState>,
) -> (&'static str, &'static str) {
    let (mut any, mut failed, mut all_dead, mut never_started) = (false, false, true, false);
    for t in tasks {
        any = true;
        failed |= t.failed;
        all_dead &= t.state == TASK_STATE_DEAD;
        never_started |= t.state == TASK_STATE_PENDING && t.started_at.is_none();
    }
    if failed {
        (ALLOC_CLIENT_FAILED, "Failed tasks")
    } else if !any {
        (ALLOC_CLIENT_PENDING, "No tasks have started")
    } else if all_dead {
        (ALLOC_CLIENT_COMPLETE, "All tasks have completed")
    } else if never_started {
        (ALLOC_CLIENT_PENDING, "No tasks have started")
    } else {
        (ALLOC_CLIENT_RUNNING, "Tasks are running")
    }
}

impl AllocRunner {
    /// Saves the runner's state locally and publishes it to the client HTTP API.
    pub(super) fn persist(&self) {
        if let Err(e) = self.deps.store.save(&self.local) {
            tracing::error!(alloc = %self.alloc_id(), error = %e, "cannot save alloc state");
        }
        self.state_tx.send_replace(Arc::new(self.local.clone()));
    }

    /// Recomputes the client status; queues an update for the servers if it changed.
    pub(super) fn report(&mut self) {
        // Poststop tasks that have not had their turn do not hold the alloc in pending.
        let main_done = lifecycle::main_tasks_dead(&self.roles, &self.local.tasks);
        let counted = self.local.tasks.iter().filter(|(name, t)| {
            main_done
                || self.roles.get(*name) != Some(&Role::Poststop)
                || t.state.started_at.is_some()
        });
        let (status, desc) = client_status(counted.map(|(_, t)| &t.state));
        self.local.client_status = status.into();
        self.local.client_description = desc.into();
        let update = AllocClientUpdate {
            id: self.local.alloc.id.to_string(),
            client_status: status.into(),
            client_description: desc.into(),
            task_states: self
                .local
                .tasks
                .iter()
                .map(|(k, v)| (k.clone(), v.state.clone()))
                .collect(),
            deployment_status: self.local.alloc.deployment_status.clone(),
        };
        if self.last_sent.as_ref() != Some(&update) {
            self.deps.updates.push(update.clone());
            self.last_sent = Some(update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(state: &str, failed: bool, started: bool) -> TaskState {
        TaskState {
            state: state.into(),
            failed,
            started_at: started.then(|| "2026-01-01T00:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn alloc_status_is_derived_from_task_states() {
        use api::{TASK_STATE_DEAD as D, TASK_STATE_PENDING as P, TASK_STATE_RUNNING as R};
        let st = |v: Vec<TaskState>| client_status(v.iter()).0;
        assert_eq!(st(vec![]), ALLOC_CLIENT_PENDING);
        assert_eq!(
            st(vec![ts(P, false, false), ts(R, false, true)]),
            ALLOC_CLIENT_PENDING
        );
        assert_eq!(
            st(vec![ts(R, false, true), ts(R, false, true)]),
            ALLOC_CLIENT_RUNNING
        );
        // Waiting to restart after having run: still running.
        assert_eq!(
            st(vec![ts(P, false, true), ts(R, false, true)]),
            ALLOC_CLIENT_RUNNING
        );
        assert_eq!(
            st(vec![ts(D, false, true), ts(R, false, true)]),
            ALLOC_CLIENT_RUNNING
        );
        assert_eq!(
            st(vec![ts(D, false, true), ts(D, false, true)]),
            ALLOC_CLIENT_COMPLETE
        );
        assert_eq!(
            st(vec![ts(D, true, true), ts(R, false, true)]),
            ALLOC_CLIENT_FAILED
        );
        assert_eq!(
            st(vec![ts(D, true, false), ts(D, false, true)]),
            ALLOC_CLIENT_FAILED
        );
    }
}
