//! The leader's services, turned on and off as leadership comes and goes.

use crate::fsm::Command;
use crate::{deployments, drainer, heartbeat, now_nanos, periodic, Server};
use std::sync::Arc;
use std::time::Duration;

/// Turn the leader's services on and off as leadership comes and goes.
pub(crate) async fn leadership_loop(server: Arc<Server>) {
    let mut metrics = server.raft.metrics();
    let mut leading = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_unblock = tokio::time::Instant::now();
    let mut last_gc = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let is_leader = server.is_leader();
        if is_leader && !leading {
            // Serve as leader only once this server has applied everything committed
            // before it took over (its own first entry commits after all of them):
            // evaluations restored from an older state would be scheduled again.
            if let Err(e) = server.write(Command::Noop).await {
                tracing::warn!(error = %e, "cannot commit the new leader's first entry; trying again");
                continue;
            }
            leading = true;
            establish_leadership(&server);
        } else if !is_leader && leading {
            leading = false;
            tracing::info!("lost leadership");
            server.broker.set_enabled(false);
            server.heartbeats.clear();
        }
        if leading {
            let now = now_nanos();
            server.broker.promote_delayed(now);
            heartbeat::expire(&server).await;
            heartbeat::expire_disconnects(&server).await;
            drainer::run_once(&server).await;
            deployments::run_once(&server).await;
            periodic::run_once(&server).await;
            // A safety net for capacity changes the broker did not hear about.
            if last_unblock.elapsed() > Duration::from_secs(10) {
                last_unblock = tokio::time::Instant::now();
                server.broker.unblock_all();
            }
            if last_gc.elapsed() > crate::gc::GC_INTERVAL {
                last_gc = tokio::time::Instant::now();
                if let Err(e) = crate::gc::run_once(&server, false).await {
                    tracing::warn!(error = %e, "garbage collection failed; next pass retries");
                }
            }
        }
    }
}

fn establish_leadership(server: &Arc<Server>) {
    tracing::info!(node_id = server.node_id, "gained leadership");
    server.broker.set_enabled(true);
    let state = server.snapshot();
    let now = now_nanos();
    for e in state.eval_table().values() {
        if e.status == api::EVAL_STATUS_PENDING || e.status == api::EVAL_STATUS_BLOCKED {
            server.broker.enqueue(e.clone(), now);
        }
    }
    server.heartbeats.initialize(&state);
}
