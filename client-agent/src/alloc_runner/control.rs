//! Restart and signal requests from the client HTTP API, passed on to the task runners
//! concerned and answered once they all replied.

use super::AllocRunner;
use crate::task_runner::TaskCommand;
use tokio::sync::oneshot;

/// Why a restart or signal request could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No such task in the allocation.
    NotFound(String),
    /// The task(s) could not do it (not running, the driver failed, ...).
    Failed(String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotFound(m) | ControlError::Failed(m) => f.write_str(m),
        }
    }
}

pub type ControlReply = oneshot::Sender<Result<(), ControlError>>;

/// Builds the order for one task runner from its reply channel.
type MakeCommand = Box<dyn Fn(crate::task_runner::Reply) -> TaskCommand + Send>;

/// Requests from the client HTTP API to an allocation's tasks.
#[derive(Debug)]
pub enum AllocControl {
    /// Restart one task (`Some`) or every running task (`None`).
    Restart {
        task: Option<String>,
        reply: ControlReply,
    },
    /// Signal one task (`Some`) or every running task (`None`).
    Signal {
        task: Option<String>,
        signal: String,
        reply: ControlReply,
    },
}

impl AllocRunner {
    /// Passes a restart or signal request on to the task runners concerned; the reply
    /// comes once they all answered.
    pub(super) fn control(&mut self, ctl: AllocControl) {
        let (task, reply, make): (Option<String>, ControlReply, MakeCommand) = match ctl {
            AllocControl::Restart { task, reply } => {
                (task, reply, Box::new(|r| TaskCommand::Restart { reply: r }))
            }
            AllocControl::Signal {
                task,
                signal,
                reply,
            } => (
                task,
                reply,
                Box::new(move |r| TaskCommand::Signal {
                    signal: signal.clone(),
                    reply: r,
                }),
            ),
        };
        let targets: Vec<String> = match &task {
            Some(t) if !self.commands.contains_key(t) => {
                let _ = reply.send(Err(ControlError::NotFound(format!(
                    "task {t:?} is not part of allocation {}",
                    self.alloc_id()
                ))));
                return;
            }
            Some(t) => vec![t.clone()],
            None => self
                .local
                .tasks
                .iter()
                .filter(|(_, t)| t.handle.is_some())
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if targets.is_empty() {
            let _ = reply.send(Err(ControlError::Failed(format!(
                "no task of allocation {} is running",
                self.alloc_id()
            ))));
            return;
        }
        let mut waits = Vec::new();
        for t in targets {
            let (tx, rx) = oneshot::channel();
            if let Some(c) = self.commands.get(&t) {
                let _ = c.send(make(tx));
            }
            waits.push((t, rx));
        }
        tokio::spawn(async move {
            let mut errs = Vec::new();
            for (t, rx) in waits {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errs.push(format!("task {t:?}: {e}")),
                    Err(_) => errs.push(format!("task {t:?}: its runner is gone")),
                }
            }
            let res = if errs.is_empty() {
                Ok(())
            } else {
                Err(ControlError::Failed(errs.join("; ")))
            };
            let _ = reply.send(res);
        });
    }
}
