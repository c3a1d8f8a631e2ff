//! Task lifecycle hooks, with Nomad's ordering: prestart tasks run first (ephemeral ones
//! to completion, sidecars until the main tasks are done), the main tasks start once
//! every ephemeral prestart task succeeded and every prestart sidecar is running,
//! poststart tasks start once every main task has started, and poststop tasks run once
//! every other task is dead.
//!
//! The alloc runner holds one [`Gates`]; each gated task runner waits on its gate.

use crate::state::LocalTaskState;
use api::{Task, TASK_STATE_DEAD, TASK_STATE_RUNNING};
use std::collections::BTreeMap;
use tokio::sync::watch;

/// Where a task sits in its group's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Main,
    Prestart { sidecar: bool },
    Poststart { sidecar: bool },
    Poststop,
}

impl Role {
    pub fn of(t: &Task) -> Role {
        match t.lifecycle.as_ref() {
            Some(l) => match l.hook.as_str() {
                "prestart" => Role::Prestart { sidecar: l.sidecar },
                "poststart" => Role::Poststart { sidecar: l.sidecar },
                "poststop" => Role::Poststop,
                _ => Role::Main,
            },
            None => Role::Main,
        }
    }

    /// A hook task meant to run once to completion (not a sidecar).
    pub fn is_ephemeral(&self) -> bool {
        matches!(
            self,
            Role::Prestart { sidecar: false } | Role::Poststart { sidecar: false } | Role::Poststop
        )
    }

    /// Whether the task must keep running for its allocation to be healthy (ephemeral
    /// hooks and poststop tasks are meant to end).
    pub fn must_be_healthy(&self) -> bool {
        matches!(
            self,
            Role::Main | Role::Prestart { sidecar: true } | Role::Poststart { sidecar: true }
        )
    }
}

/// Every main task is dead (false if the group has none).
pub fn main_tasks_dead(
    roles: &BTreeMap<String, Role>,
    tasks: &BTreeMap<String, LocalTaskState>,
) -> bool {
    let mut any = false;
    for (name, role) in roles {
        if *role == Role::Main {
            any = true;
            if tasks
                .get(name)
                .is_none_or(|t| t.state.state != TASK_STATE_DEAD)
            {
                return false;
            }
        }
    }
    any
}

/// The gates of the main, poststart and poststop tasks; they only ever open.
#[derive(Debug)]
pub struct Gates {
    main: watch::Sender<bool>,
    poststart: watch::Sender<bool>,
    poststop: watch::Sender<bool>,
}

impl Default for Gates {
    fn default() -> Self {
        Self::new()
    }
}

impl Gates {
    pub fn new() -> Self {
        Gates {
            main: watch::channel(false).0,
            poststart: watch::channel(false).0,
            poststop: watch::channel(false).0,
        }
    }

    /// The gate a task of `role` waits on; prestart tasks start at once.
    pub fn gate_for(&self, role: Role) -> Option<watch::Receiver<bool>> {
        match role {
            Role::Prestart { .. } => None,
            Role::Main => Some(self.main.subscribe()),
            Role::Poststart { .. } => Some(self.poststart.subscribe()),
            Role::Poststop => Some(self.poststop.subscribe()),
        }
    }

    /// Opens the gates whose conditions hold for `tasks` now.
    pub fn update(
        &self,
        roles: &BTreeMap<String, Role>,
        tasks: &BTreeMap<String, LocalTaskState>,
        _stopping: bool,
    ) {
        let state = |n: &str| tasks.get(n).map(|t| &t.state);
        let prestart_done = roles.iter().all(|(name, role)| match role {
            Role::Prestart { sidecar: false } => {
                state(name).is_some_and(|s| s.state == TASK_STATE_DEAD && !s.failed)
            }
            Role::Prestart { sidecar: true } => {
                state(name).is_some_and(|s| s.state == TASK_STATE_RUNNING || s.started_at.is_some())
            }
            _ => true,
        });
        let main_started = roles.iter().all(|(name, role)| {
            *role != Role::Main || state(name).is_some_and(|s| s.started_at.is_some())
        });
        let others_dead = roles.iter().all(|(name, role)| {
            *role == Role::Poststop || state(name).is_some_and(|s| s.state == TASK_STATE_DEAD)
        });
        let open = |g: &watch::Sender<bool>, cond: bool| {
            if cond {
                g.send_if_modified(|v| !std::mem::replace(v, true));
            }
        };
        open(&self.main, prestart_done);
        open(&self.poststart, main_started);
        open(&self.poststop, others_dead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: &str, failed: bool, started: bool) -> LocalTaskState {
        LocalTaskState {
            state: api::TaskState {
                state: state.into(),
                failed,
                started_at: started.then(|| "now".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn gates_open_in_nomads_order() {
        let roles = BTreeMap::from([
            ("init".to_string(), Role::Prestart { sidecar: false }),
            ("main".to_string(), Role::Main),
            ("after".to_string(), Role::Poststart { sidecar: false }),
            ("cleanup".to_string(), Role::Poststop),
        ]);
        let g = Gates::new();
        let main = g.gate_for(Role::Main).unwrap();
        let post = g.gate_for(Role::Poststart { sidecar: false }).unwrap();
        let stop = g.gate_for(Role::Poststop).unwrap();
        assert!(g.gate_for(Role::Prestart { sidecar: true }).is_none());
        let mut tasks = BTreeMap::from([
            ("init".to_string(), st(TASK_STATE_RUNNING, false, true)),
            ("main".to_string(), st("pending", false, false)),
        ]);
        g.update(&roles, &tasks, false);
        assert!(!*main.borrow());
        tasks.insert("init".into(), st(TASK_STATE_DEAD, false, true));
        g.update(&roles, &tasks, false);
        assert!(*main.borrow() && !*post.borrow());
        tasks.insert("main".into(), st(TASK_STATE_RUNNING, false, true));
        g.update(&roles, &tasks, false);
        assert!(*post.borrow() && !*stop.borrow());
        tasks.insert("main".into(), st(TASK_STATE_DEAD, false, true));
        tasks.insert("after".into(), st(TASK_STATE_DEAD, false, true));
        assert!(main_tasks_dead(&roles, &tasks));
        g.update(&roles, &tasks, false);
        assert!(*stop.borrow());
    }

    #[test]
    fn a_failed_prestart_task_keeps_the_main_tasks_waiting() {
        let roles = BTreeMap::from([
            ("init".to_string(), Role::Prestart { sidecar: false }),
            ("main".to_string(), Role::Main),
        ]);
        let g = Gates::new();
        let main = g.gate_for(Role::Main).unwrap();
        let tasks = BTreeMap::from([("init".to_string(), st(TASK_STATE_DEAD, true, true))]);
        g.update(&roles, &tasks, false);
        assert!(!*main.borrow());
    }
}
