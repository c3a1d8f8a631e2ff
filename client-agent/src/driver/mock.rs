//! `mock_driver` (Nomad's name): a driver that never starts a process. A task "starts"
//! after a configurable delay and "runs" until it is stopped. The node simulator
//! (`loadtest`'s `node-sim`) runs thousands of nodes behind it, so that the servers do
//! the work real agents cause without a process per task.

use super::{healthy, Driver, DriverError, ExitResult, TaskContext, TaskHandle};
use api::DriverInfo;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The tasks that "run", by task ID: each holds the sender of its exit (`None` while it
/// runs).
type Running = HashMap<String, watch::Sender<Option<ExitResult>>>;

#[derive(Debug, Clone, Default)]
pub struct MockDriver {
    start_delay: Duration,
    running: Arc<Mutex<Running>>,
}

impl MockDriver {
    /// A mock driver whose tasks reach running `start_delay` after they are started.
    pub fn new(start_delay: Duration) -> Self {
        MockDriver {
            start_delay,
            running: Arc::default(),
        }
    }

    /// How many tasks run now.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the task with `res` (its `wait` returns it) and forgets it.
    fn finish(&self, task_id: &str, res: ExitResult) {
        if let Some(tx) = self.lock().remove(task_id) {
            let _ = tx.send(Some(res));
        }
    }
}

#[async_trait]
impl Driver for MockDriver {
    fn name(&self) -> &'static str {
        "mock_driver"
    }

    async fn fingerprint(&self) -> Option<DriverInfo> {
        Some(healthy(Default::default()))
    }

    async fn start(&self, ctx: &TaskContext) -> Result<TaskHandle, DriverError> {
        tokio::time::sleep(self.start_delay).await;
        let task_id = ctx.task_id();
        let (tx, _) = watch::channel(None);
        self.lock().insert(task_id.clone(), tx);
        Ok(TaskHandle {
            driver: self.name().into(),
            task_id,
            ..Default::default()
        })
    }

    async fn wait(&self, handle: &TaskHandle) -> ExitResult {
        let rx = self.lock().get(&handle.task_id).map(|tx| tx.subscribe());
        let Some(mut rx) = rx else {
            return ExitResult {
                exit_code: -1,
                err: Some("the mock driver does not know this task".into()),
                ..Default::default()
            };
        };
        let res = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or_default(),
            // Finished (and forgotten) before this wait subscribed.
            Err(_) => ExitResult::default(),
        };
        res
    }

    async fn stop(
        &self,
        handle: &TaskHandle,
        _signal: &str,
        _timeout: Duration,
    ) -> Result<(), DriverError> {
        // A stopped task exits as SIGTERM would end it.
        self.finish(
            &handle.task_id,
            ExitResult {
                exit_code: 128 + 15,
                signal: 15,
                ..Default::default()
            },
        );
        Ok(())
    }

    async fn signal(&self, handle: &TaskHandle, _signal: &str) -> Result<(), DriverError> {
        if self.lock().contains_key(&handle.task_id) {
            Ok(())
        } else {
            Err(DriverError::Signal(format!(
                "task {} is not running",
                handle.task_id
            )))
        }
    }

    async fn recover(&self, handle: &TaskHandle) -> Result<bool, DriverError> {
        Ok(self.lock().contains_key(&handle.task_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocdir::AllocDir;
    use crate::taskenv::TaskEnv;

    fn ctx(alloc: &str) -> TaskContext {
        let task = api::Task {
            name: "t".into(),
            driver: "mock_driver".into(),
            ..Default::default()
        };
        let dirs = AllocDir::new(std::path::Path::new("/nonexistent"), alloc)
            .task_dirs("t")
            .expect("a plain task name");
        let env = TaskEnv::build_with(
            &api::Node::default(),
            &api::Allocation::default(),
            &task,
            &dirs,
            &[],
            Default::default(),
        );
        TaskContext {
            alloc_id: alloc.into(),
            task,
            dirs,
            env,
            ports: vec![],
        }
    }

    #[tokio::test]
    async fn mock_tasks_run_after_the_delay_until_stopped() {
        let d = MockDriver::new(Duration::from_millis(20));
        let t0 = std::time::Instant::now();
        let h = d.start(&ctx("a1")).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(20));
        assert_eq!(d.running(), 1);
        assert!(d.recover(&h).await.unwrap());
        let waiter = {
            let (d, h) = (d.clone(), h.clone());
            tokio::spawn(async move { d.wait(&h).await })
        };
        tokio::task::yield_now().await;
        d.stop(&h, "SIGTERM", Duration::from_secs(1)).await.unwrap();
        let res = waiter.await.unwrap();
        assert_eq!(res.signal, 15);
        assert_eq!(d.running(), 0);
        assert!(!d.recover(&h).await.unwrap());
    }
}
