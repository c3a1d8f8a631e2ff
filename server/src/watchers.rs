//! Wake-ups by node for the blocking watch of a node's allocations.
//!
//! Every applied batch of Raft entries publishes a new state on one `watch` channel; a
//! blocking query on that channel is polled on every publish. With 5,000 agents each
//! watching its own node, that was 5,000 task wake-ups per batch, nearly all finding
//! nothing new. Here each watched node has its own `Notify`, and the apply hook wakes only
//! the nodes whose allocations the batch changed (`fsm::Effects::wakes`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Which nodes' allocation watches an applied batch must wake.
#[derive(Debug, Default)]
pub struct NodeWakes {
    /// Nodes whose allocation index moved.
    pub nodes: Vec<String>,
    /// Every node (a snapshot was restored or installed).
    pub all: bool,
}

impl NodeWakes {
    pub fn extend(&mut self, other: NodeWakes) {
        self.all |= other.all;
        if !self.all {
            self.nodes.extend(other.nodes);
        }
    }
}

/// The `Notify` of every node someone is watching right now.
#[derive(Default)]
pub struct NodeWatchers {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

/// One watcher's hold on a node's `Notify`; the entry goes when its last holder does, so
/// the map holds only nodes being watched (whatever IDs a caller makes up).
pub struct NodeWatch<'a> {
    registry: &'a NodeWatchers,
    node: String,
    pub notify: Arc<Notify>,
}

impl NodeWatchers {
    pub fn watch(&self, node: &str) -> NodeWatch<'_> {
        let notify = self
            .lock()
            .entry(node.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        NodeWatch {
            registry: self,
            node: node.to_string(),
            notify,
        }
    }

    /// Wake the watchers of the nodes `w` names (all of them for `w.all`). Called after
    /// the new state is published, so a watcher that registered before reading the state
    /// either saw the change or is woken now.
    pub fn wake(&self, w: &NodeWakes) {
        let map = self.lock();
        if w.all {
            map.values().for_each(|n| n.notify_waiters());
            return;
        }
        for node in &w.nodes {
            if let Some(n) = map.get(node) {
                n.notify_waiters();
            }
        }
    }

    /// How many nodes are being watched (tests, metrics).
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        // A panic while holding this lock leaves the map consistent (no partial writes).
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for NodeWatch<'_> {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        // Under the lock no one can clone the entry: 2 = the map's and ours.
        if Arc::strong_count(&self.notify) == 2 {
            map.remove(&self.node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wake_reaches_only_the_named_nodes_watchers() {
        let w = NodeWatchers::default();
        let a = w.watch("a");
        let b = w.watch("b");
        let fa = a.notify.notified();
        let fb = b.notify.notified();
        tokio::pin!(fa, fb);
        fa.as_mut().enable();
        fb.as_mut().enable();
        w.wake(&NodeWakes {
            nodes: vec!["a".into()],
            all: false,
        });
        tokio::time::timeout(Duration::from_secs(5), fa)
            .await
            .expect("a is woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fb)
                .await
                .is_err(),
            "b is not"
        );
        w.wake(&NodeWakes {
            nodes: vec![],
            all: true,
        });
    }

    #[test]
    fn the_map_forgets_a_node_when_its_last_watcher_goes() {
        let w = NodeWatchers::default();
        let one = w.watch("n");
        let two = w.watch("n");
        assert_eq!(w.watched(), 1);
        drop(one);
        assert_eq!(w.watched(), 1, "still watched by the second");
        drop(two);
        assert_eq!(w.watched(), 0);
        for i in 0..1000 {
            drop(w.watch(&format!("made-up-{i}")));
        }
        assert_eq!(w.watched(), 0, "made-up IDs leave nothing behind");
    }
}
