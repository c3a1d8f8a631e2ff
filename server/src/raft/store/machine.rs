//! The state machine as openraft sees it: applies committed entries to the state store
//! through `fsm::apply`, answers a proposal sent again from the once-token table, publishes
//! each new state, and builds, stores and installs snapshots (sled's `snapshots` tree).

use super::super::{io_err, LogId, NodeId, ServerNode, StorageError, TypeConfig};
use super::records::{seal, unseal, Damage};
use super::{get_json, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_META};
use crate::fsm::{self, Effects, Response};
use crate::state::StateStore;
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;
use tokio::sync::watch;

/// Called with what each applied batch changed; the leader's services hang off it.
pub trait ApplyHook: Send + Sync + 'static {
    fn applied(&self, state: &Arc<StateStore>, effects: Effects);
}

/// The FSM as openraft sees it: applies entries to the state store, publishes each new
/// state to readers, and builds, stores and installs snapshots.
pub struct StateMachine {
    state: StateStore,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, ServerNode>,
    publisher: watch::Sender<Arc<StateStore>>,
    hook: Arc<dyn ApplyHook>,
    snapshots: sled::Tree,
    installed: Arc<std::sync::atomic::AtomicU64>,
    once: OnceTable,
}

/// How many log entries a proposal's token is remembered for: far longer than any
/// request is held and sent again.
const ONCE_WINDOW: u64 = 100_000;

/// Tokens of applied proposals and what they answered, so one sent again (after its
/// outcome became unknown) is answered without being applied twice. Replicated: it
/// changes only on apply and travels in snapshots. Cheap to clone (imbl).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnceTable {
    answers: imbl::OrdMap<String, (u64, Response)>,
    by_index: imbl::OrdSet<(u64, String)>,
}

impl OnceTable {
    /// The answer a token already got, if it was applied.
    pub fn get(&self, token: &str) -> Option<&Response> {
        self.answers.get(token).map(|(_, r)| r)
    }

    /// Remember `token`'s answer at `index`, forgetting tokens older than the window.
    pub fn insert(&mut self, index: u64, token: String, resp: Response) {
        while let Some((i, t)) = self.by_index.get_min().cloned() {
            if i + ONCE_WINDOW > index {
                break;
            }
            self.by_index.remove(&(i, t.clone()));
            self.answers.remove(&t);
        }
        self.by_index.insert((index, token.clone()));
        self.answers.insert(token, (index, resp));
    }

    fn to_list(&self) -> Vec<(u64, String, Response)> {
        self.answers
            .iter()
            .map(|(t, (i, r))| (*i, t.clone(), r.clone()))
            .collect()
    }

    fn from_list(list: Vec<(u64, String, Response)>) -> Self {
        let mut t = OnceTable::default();
        for (i, token, r) in list {
            t.by_index.insert((i, token.clone()));
            t.answers.insert(token, (i, r));
        }
        t
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    state: StateStore,
    #[serde(default)]
    once: Vec<(u64, String, Response)>,
}

impl StateMachine {
    /// Load the newest snapshot from disk, if any; the log after it is replayed by Raft.
    pub fn open(
        db: &sled::Db,
        publisher: watch::Sender<Arc<StateStore>>,
        hook: Arc<dyn ApplyHook>,
        installed: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self, StorageError> {
        let snapshots = db.open_tree("snapshots").map_err(|e| io_err(false, e))?;
        let mut sm = StateMachine {
            state: StateStore::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            publisher,
            hook,
            snapshots,
            installed,
            once: OnceTable::default(),
        };
        if let Some((meta, data)) = read_snapshot(&sm.snapshots)? {
            sm.restore(&meta, &data)?;
        }
        Ok(sm)
    }

    fn restore(
        &mut self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let body: SnapshotBody = serde_json::from_slice(data).map_err(|e| io_err(false, e))?;
        self.state = body.state;
        self.once = OnceTable::from_list(body.once);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let published = Arc::new(self.state.clone());
        self.publisher.send_replace(published.clone());
        // Every node's allocation index may have moved: wake every watch.
        let fx = Effects {
            wakes: crate::watchers::NodeWakes {
                nodes: Vec::new(),
                all: true,
            },
            ..Default::default()
        };
        self.hook.applied(&published, fx);
        Ok(())
    }
}

/// Store a snapshot and its meta, each sealed with its checksum, in one batch.
fn write_snapshot(
    tree: &sled::Tree,
    meta: &SnapshotMeta<NodeId, ServerNode>,
    data: &[u8],
) -> Result<(), StorageError> {
    let meta_bytes = serde_json::to_vec(meta).map_err(|e| io_err(true, e))?;
    let mut batch = sled::Batch::default();
    batch.insert(KEY_SNAPSHOT_META, seal(&meta_bytes));
    batch.insert(KEY_SNAPSHOT_DATA, seal(data));
    tree.apply_batch(batch).map_err(|e| io_err(true, e))
}

type Meta = SnapshotMeta<NodeId, ServerNode>;

/// The stored snapshot, its checksums verified.
fn read_snapshot(tree: &sled::Tree) -> Result<Option<(Meta, Vec<u8>)>, StorageError> {
    let Some(meta) = get_json::<SnapshotMeta<NodeId, ServerNode>>(tree, KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let sealed = tree
        .get(KEY_SNAPSHOT_DATA)
        .map_err(|e| io_err(false, e))?
        .ok_or_else(|| {
            io_err(
                false,
                Damage("the snapshot's meta exists but its data is missing".into()),
            )
        })?;
    let data = unseal("snapshot_data", &sealed)
        .map_err(|e| io_err(false, e))?
        .to_vec();
    Ok(Some((meta, data)))
}

/// Builds a snapshot from an immutable copy of the state, off the apply path.
pub struct SnapshotBuilder {
    state: Arc<StateStore>,
    once: OnceTable,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, ServerNode>,
    snapshots: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.clone();
        let once = self.once.to_list();
        let data = tokio::task::spawn_blocking(move || {
            serde_json::to_vec(&SnapshotBodyRef {
                state: &state,
                once: &once,
            })
        })
        .await
        .map_err(|e| io_err(true, e))?
        .map_err(|e| io_err(true, e))?;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        write_snapshot(&self.snapshots, &meta, &data)?;
        // The log before this snapshot may be purged next: the snapshot must be durable first.
        self.snapshots
            .flush_async()
            .await
            .map_err(|e| io_err(true, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[derive(Serialize)]
struct SnapshotBodyRef<'a> {
    state: &'a StateStore,
    once: &'a [(u64, String, Response)],
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, ServerNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut effects = Effects::default();
        let started = std::time::Instant::now();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {
                    fsm::advance(&mut self.state, index);
                    out.push(Response {
                        index,
                        ..Default::default()
                    });
                }
                EntryPayload::Normal(p) => match p.once {
                    // Sent again after its outcome became unknown: answer as the first time.
                    Some(token) if self.once.get(&token).is_some() => {
                        fsm::advance(&mut self.state, index);
                        out.push(self.once.get(&token).cloned().unwrap_or_default());
                    }
                    Some(token) => {
                        let resp = fsm::apply(&mut self.state, index, p.cmd, &mut effects);
                        self.once.insert(index, token, resp.clone());
                        out.push(resp);
                    }
                    None => out.push(fsm::apply(&mut self.state, index, p.cmd, &mut effects)),
                },
                EntryPayload::Membership(m) => {
                    fsm::advance(&mut self.state, index);
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Response {
                        index,
                        ..Default::default()
                    });
                }
            }
        }
        ::metrics::histogram!("nomad.raft.fsm.apply").record(crate::metrics::ms_since(started));
        let published = Arc::new(self.state.clone());
        self.publisher.send_replace(published.clone());
        self.hook.applied(&published, effects);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            state: Arc::new(self.state.clone()),
            once: self.once.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        write_snapshot(&self.snapshots, meta, &data)?;
        self.snapshots
            .flush_async()
            .await
            .map_err(|e| io_err(true, e))?;
        self.restore(meta, &data)?;
        self.installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(last_log = ?meta.last_log_id, bytes = data.len(), "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((meta, data)) = read_snapshot(&self.snapshots)? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{open_db, SLED_DIR};
    use super::*;
    use openraft::CommittedLeaderId;
    use std::path::Path;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    struct NoHook;
    impl ApplyHook for NoHook {
        fn applied(&self, _: &Arc<StateStore>, _: Effects) {}
    }

    fn machine(dir: &Path) -> (StateMachine, watch::Receiver<Arc<StateStore>>) {
        let db = open_db(&dir.join(SLED_DIR)).unwrap();
        let (tx, rx) = watch::channel(Arc::new(StateStore::default()));
        let sm = StateMachine::open(&db, tx, Arc::new(NoHook), Default::default()).unwrap();
        (sm, rx)
    }

    fn registration(index: u64, seq: &str, once: Option<&str>) -> Entry<TypeConfig> {
        let mut job = api::Job {
            id: "web".into(),
            task_groups: vec![api::TaskGroup {
                name: "g".into(),
                tasks: vec![api::Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        job.meta.insert("seq".into(), seq.into());
        job.canonicalize();
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(crate::raft::Proposal {
                once: once.map(str::to_string),
                cmd: fsm::Command::RegisterJob {
                    job,
                    eval: Some(api::Evaluation {
                        id: format!("eval-{index}"),
                        job_id: "web".into(),
                        status: api::EVAL_STATUS_PENDING.into(),
                        ..Default::default()
                    }),
                    now: 0,
                },
            }),
        }
    }

    fn current_seq(rx: &watch::Receiver<Arc<StateStore>>) -> (String, u64) {
        let s = rx.borrow().clone();
        let j = s.job("default", "web").unwrap();
        (j.meta["seq"].clone(), j.version)
    }

    #[tokio::test]
    async fn a_proposal_sent_again_with_its_token_is_applied_once_even_after_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, rx) = machine(dir.path());
        let first = sm
            .apply([registration(1, "a", Some("req-0"))])
            .await
            .unwrap();
        // Another client's write lands in between.
        sm.apply([registration(2, "b", None)]).await.unwrap();
        // The first request, sent again after its outcome became unknown.
        let again = sm
            .apply([registration(3, "a", Some("req-0"))])
            .await
            .unwrap();
        assert_eq!(again, first, "the repeat is answered as the first time");
        assert_eq!(
            again[0].eval_id, "eval-1",
            "the repeat names the evaluation the first attempt committed"
        );
        assert_eq!(current_seq(&rx), ("b".to_string(), 1));
        assert_eq!(rx.borrow().index(), 3);

        // The tokens travel in snapshots: a follower that installs one dedupes too.
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        let (mut follower, rx2) = machine(dir2.path());
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        follower
            .apply([registration(4, "a", Some("req-0"))])
            .await
            .unwrap();
        assert_eq!(current_seq(&rx2), ("b".to_string(), 1));
        // Without a token, the same registration is a new write.
        follower.apply([registration(5, "a", None)]).await.unwrap();
        assert_eq!(current_seq(&rx2), ("a".to_string(), 2));
    }

    #[test]
    fn tokens_are_forgotten_after_the_window() {
        let mut t = OnceTable::default();
        t.insert(1, "old".into(), Response::default());
        t.insert(ONCE_WINDOW, "recent".into(), Response::default());
        assert!(t.get("old").is_some());
        t.insert(ONCE_WINDOW + 1, "new".into(), Response::default());
        assert!(t.get("old").is_none());
        assert!(t.get("recent").is_some() && t.get("new").is_some());
        assert_eq!(OnceTable::from_list(t.to_list()), t);
    }
}
