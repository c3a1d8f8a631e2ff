//! Durable Raft storage in sled: the log, the vote, and FSM snapshots.
//!
//! Every sled use of the server lives in this file, so swapping the engine (redb, fjall)
//! stays a one-file change. Writes that Raft relies on (appends, votes) are flushed to
//! disk before they are acknowledged: sled alone only syncs every 500 ms.

// openraft's traits fix `StorageError` (large) as the error type; our helpers match them.
#![allow(clippy::result_large_err)]

use super::{io_err, LogId, NodeId, ServerNode, StorageError, TypeConfig};
use crate::fsm::{self, Effects, Response};
use crate::state::StateStore;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

/// Open (or create) the server's sled database.
pub fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        // sled caches up to 1 GiB by default; the state lives in memory already.
        .cache_capacity(32 * 1024 * 1024)
        .open()
}

fn get_json<T: for<'de> Deserialize<'de>>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    match tree.get(key).map_err(|e| io_err(false, e))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| io_err(false, e)),
    }
}

fn put_json<T: Serialize>(tree: &sled::Tree, key: &[u8], v: &T) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(v).map_err(|e| io_err(true, e))?;
    tree.insert(key, bytes).map_err(|e| io_err(true, e))?;
    Ok(())
}

/// The Raft log and vote. Cheap to clone: sled trees are reference-counted.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    pub fn new(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
        })
    }

    /// Bytes sled uses on disk, for the load harness.
    pub fn disk_size(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for kv in self.logs.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(|e| io_err(false, e))?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().expect("8-byte log key"));
            if !range.contains(&idx) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(|e| io_err(false, e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = get_json(&self.meta, KEY_PURGED)?;
        let last = match self.logs.last().map_err(|e| io_err(false, e))? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> =
                    serde_json::from_slice(&v).map_err(|e| io_err(false, e))?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        put_json(&self.meta, KEY_VOTE, vote)?;
        self.db.flush_async().await.map_err(|e| io_err(true, e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        get_json(&self.meta, KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // A hint for faster recovery; losing it only means re-applying from the snapshot.
        put_json(&self.meta, KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(get_json::<Option<LogId>>(&self.meta, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(|e| io_err(true, e))?;
            batch.insert(&e.log_id.index.to_be_bytes(), bytes);
        }
        self.logs.apply_batch(batch).map_err(|e| io_err(true, e))?;
        // Group commit: one fsync covers every entry of this append.
        let res = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        callback.log_io_completed(res);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let keys: Vec<_> = self
            .logs
            .range(log_id.index.to_be_bytes()..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| io_err(true, e))?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(|e| io_err(true, e))?;
        self.db.flush_async().await.map_err(|e| io_err(true, e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        put_json(&self.meta, KEY_PURGED, &log_id)?;
        let keys: Vec<_> = self
            .logs
            .range(..=log_id.index.to_be_bytes())
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| io_err(true, e))?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(|e| io_err(true, e))?;
        Ok(())
    }
}

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
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    state: StateStore,
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
        };
        if let Some(meta) =
            get_json::<SnapshotMeta<NodeId, ServerNode>>(&sm.snapshots, KEY_SNAPSHOT_META)?
        {
            let data = sm
                .snapshots
                .get(KEY_SNAPSHOT_DATA)
                .map_err(|e| io_err(false, e))?
                .unwrap_or_default();
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
        let state = body.state;
        self.state = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let published = Arc::new(self.state.clone());
        self.publisher.send_replace(published.clone());
        self.hook.applied(&published, Effects::default());
        Ok(())
    }

    fn store_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| io_err(true, e))?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_SNAPSHOT_META, meta_bytes);
        batch.insert(KEY_SNAPSHOT_DATA, data);
        self.snapshots
            .apply_batch(batch)
            .map_err(|e| io_err(true, e))?;
        Ok(())
    }
}

/// Builds a snapshot from an immutable copy of the state, off the apply path.
pub struct SnapshotBuilder {
    state: Arc<StateStore>,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, ServerNode>,
    snapshots: sled::Tree,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.clone();
        let data = tokio::task::spawn_blocking(move || {
            serde_json::to_vec(&SnapshotBodyRef { state: &state })
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
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| io_err(true, e))?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_SNAPSHOT_META, meta_bytes);
        batch.insert(KEY_SNAPSHOT_DATA, data.as_slice());
        self.snapshots
            .apply_batch(batch)
            .map_err(|e| io_err(true, e))?;
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
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {
                    self.state.index = index;
                    out.push(Response {
                        index,
                        ..Default::default()
                    });
                }
                EntryPayload::Normal(cmd) => {
                    out.push(fsm::apply(&mut self.state, index, cmd, &mut effects));
                }
                EntryPayload::Membership(m) => {
                    self.state.index = index;
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Response {
                        index,
                        ..Default::default()
                    });
                }
            }
        }
        let published = Arc::new(self.state.clone());
        self.publisher.send_replace(published.clone());
        self.hook.applied(&published, effects);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            state: Arc::new(self.state.clone()),
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
        self.store_snapshot(meta, &data)?;
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
        let Some(meta) =
            get_json::<SnapshotMeta<NodeId, ServerNode>>(&self.snapshots, KEY_SNAPSHOT_META)?
        else {
            return Ok(None);
        };
        let data = self
            .snapshots
            .get(KEY_SNAPSHOT_DATA)
            .map_err(|e| io_err(false, e))?
            .map(|v| v.to_vec())
            .unwrap_or_default();
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
