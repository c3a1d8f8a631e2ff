//! The state machine as openraft sees it: applies committed entries to the state store
//! through `fsm::apply`, answers a proposal sent again from the once-token table, publishes
//! each new state, and builds, stores and installs snapshots (sled's `snapshots` tree).

use super::super::{io_err, LogId, NodeId, ServerNode, StorageError, TypeConfig};
use super::records::{seal, unseal, Damage};
use super::snapfile::{self, FileRecord};
use super::{get_json, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_FILE, KEY_SNAPSHOT_META};
use crate::fsm::{self, Effects, Response};
use crate::state::StateStore;
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
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
    /// Where the snapshot files are (`raft.snapshots/` beside the sled database).
    dir: PathBuf,
    /// Files begun for snapshots streaming in from the leader, not installed yet.
    receiving: Vec<PathBuf>,
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
    /// `dir` holds the snapshot files ([`snapfile::dir_for`] the sled database).
    pub fn open(
        db: &sled::Db,
        dir: &Path,
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
            dir: dir.to_path_buf(),
            receiving: Vec::new(),
            installed,
            once: OnceTable::default(),
        };
        migrate_inline_snapshot(&sm.snapshots, &sm.dir)?;
        match read_snapshot(&sm.snapshots)? {
            Some((meta, rec)) => {
                // Files left by a crash mid-write or by an abandoned transfer.
                snapfile::remove_except(&sm.dir, &rec.name, false);
                sm.restore(&meta, &rec)?;
            }
            None => snapfile::remove_except(&sm.dir, "", false),
        }
        Ok(sm)
    }

    /// Replace the state with the snapshot in `rec`'s file, checking its checksum.
    fn restore(
        &mut self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        rec: &FileRecord,
    ) -> Result<(), StorageError> {
        let body: SnapshotBody = snapfile::read_json(&self.dir.join(&rec.name), Some(rec))
            .map_err(|e| io_err(false, e))?;
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

/// Record a snapshot file (already synced in place) and its meta, each sealed with its
/// checksum, in one batch, and flush it: from here on this is the snapshot.
async fn record_snapshot(
    tree: &sled::Tree,
    meta: &SnapshotMeta<NodeId, ServerNode>,
    rec: &FileRecord,
) -> Result<(), StorageError> {
    let meta_bytes = serde_json::to_vec(meta).map_err(|e| io_err(true, e))?;
    let rec_bytes = serde_json::to_vec(rec).map_err(|e| io_err(true, e))?;
    let mut batch = sled::Batch::default();
    batch.insert(KEY_SNAPSHOT_META, seal(&meta_bytes));
    batch.insert(KEY_SNAPSHOT_FILE, seal(&rec_bytes));
    batch.remove(KEY_SNAPSHOT_DATA);
    tree.apply_batch(batch).map_err(|e| io_err(true, e))?;
    // The log before this snapshot may be purged next: the record must be durable first.
    tree.flush_async().await.map_err(|e| io_err(true, e))?;
    Ok(())
}

type Meta = SnapshotMeta<NodeId, ServerNode>;

/// The stored snapshot's meta and the record of its file, their checksums verified (the
/// file's own is checked as it is read).
fn read_snapshot(tree: &sled::Tree) -> Result<Option<(Meta, FileRecord)>, StorageError> {
    let Some(meta) = get_json::<SnapshotMeta<NodeId, ServerNode>>(tree, KEY_SNAPSHOT_META)? else {
        return Ok(None);
    };
    let rec = get_json::<FileRecord>(tree, KEY_SNAPSHOT_FILE)?.ok_or_else(|| {
        io_err(
            false,
            Damage("the snapshot's meta exists but its file record is missing".into()),
        )
    })?;
    // Only a name inside the snapshot directory, whatever the record says.
    if rec.name.is_empty() || rec.name.contains(['/', '\\']) || rec.name.starts_with('.') {
        return Err(io_err(
            false,
            Damage(format!("the snapshot's file record names {:?}", rec.name)),
        ));
    }
    Ok(Some((meta, rec)))
}

/// A data dir from before snapshot files kept its snapshot inside sled: move it to a file
/// (checksum checked first), once.
fn migrate_inline_snapshot(tree: &sled::Tree, dir: &Path) -> Result<(), StorageError> {
    let Some(sealed) = tree.get(KEY_SNAPSHOT_DATA).map_err(|e| io_err(false, e))? else {
        return Ok(());
    };
    let data = unseal("snapshot_data", &sealed).map_err(|e| io_err(false, e))?;
    let index = get_json::<Meta>(tree, KEY_SNAPSHOT_META)?
        .and_then(|m| m.last_log_id)
        .map_or(0, |l| l.index);
    let rec = snapfile::write(dir, &snapfile::new_name(index, "json"), |w| {
        std::io::Write::write_all(w, &data)
    })
    .map_err(|e| io_err(true, e))?;
    let rec_bytes = serde_json::to_vec(&rec).map_err(|e| io_err(true, e))?;
    let mut batch = sled::Batch::default();
    batch.insert(KEY_SNAPSHOT_FILE, seal(&rec_bytes));
    batch.remove(KEY_SNAPSHOT_DATA);
    tree.apply_batch(batch).map_err(|e| io_err(true, e))?;
    tree.flush().map_err(|e| io_err(true, e))?;
    tracing::info!(file = %rec.name, "moved the snapshot out of sled into its own file");
    Ok(())
}

/// Builds a snapshot from an immutable copy of the state, off the apply path.
pub struct SnapshotBuilder {
    state: Arc<StateStore>,
    once: OnceTable,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, ServerNode>,
    snapshots: sled::Tree,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.clone();
        let once = self.once.to_list();
        let dir = self.dir.clone();
        let name = snapfile::new_name(self.last_applied.map_or(0, |l| l.index), "json");
        // Streamed to the file: the state is never held as one buffer.
        let rec = tokio::task::spawn_blocking(move || {
            snapfile::write(&dir, &name, |w| {
                serde_json::to_writer(
                    w,
                    &SnapshotBodyRef {
                        state: &state,
                        once: &once,
                    },
                )
                .map_err(std::io::Error::from)
            })
        })
        .await
        .map_err(|e| io_err(true, e))?
        .map_err(|e| io_err(true, e))?;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{:08x}", l.leader_id, l.index, rec.crc),
            None => format!("empty-{:08x}", rec.crc),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        record_snapshot(&self.snapshots, &meta, &rec).await?;
        // Older snapshots only: a file being received is the state machine's to remove.
        snapfile::remove_except(&self.dir, &rec.name, true);
        let file = tokio::fs::File::open(self.dir.join(&rec.name))
            .await
            .map_err(|e| io_err(false, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
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
            dir: self.dir.clone(),
        }
    }

    /// A new file for a snapshot streaming in from the leader; its chunks are written
    /// into it as they arrive.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_err(true, e))?;
        let path = self.dir.join(snapfile::new_name(0, "recv"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| io_err(true, e))?;
        self.receiving.push(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        snapshot.flush().await.map_err(|e| io_err(true, e))?;
        snapshot.sync_all().await.map_err(|e| io_err(true, e))?;
        let received = received_path(&snapshot, &self.receiving).await?;
        let abandoned: Vec<PathBuf> = self
            .receiving
            .drain(..)
            .filter(|p| *p != received)
            .collect();
        drop(snapshot);
        // Checked whole before anything changes: a damaged transfer is refused.
        let (from, dir, index) = (
            received.clone(),
            self.dir.clone(),
            meta.last_log_id.map_or(0, |l| l.index),
        );
        let rec = tokio::task::spawn_blocking(move || {
            let mut rec = snapfile::verify(&from, None)?;
            rec.name = snapfile::new_name(index, "json");
            std::fs::rename(&from, dir.join(&rec.name))
                .and_then(|_| snapfile::sync_dir(&dir))
                .map_err(|e| Damage(format!("cannot keep the received snapshot: {e}")))?;
            Ok::<_, Damage>(rec)
        })
        .await
        .map_err(|e| io_err(true, e))?;
        let rec = match rec {
            Ok(r) => r,
            Err(d) => {
                let _ = std::fs::remove_file(&received);
                return Err(io_err(false, d));
            }
        };
        record_snapshot(&self.snapshots, meta, &rec).await?;
        for p in abandoned {
            let _ = std::fs::remove_file(p);
        }
        snapfile::remove_except(&self.dir, &rec.name, true);
        self.restore(meta, &rec)?;
        self.installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(last_log = ?meta.last_log_id, bytes = rec.len, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((meta, rec)) = read_snapshot(&self.snapshots)? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.dir.join(&rec.name))
            .await
            .map_err(|e| io_err(false, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Which of the files begun for receiving `file` is (same device and inode).
async fn received_path(
    file: &tokio::fs::File,
    receiving: &[PathBuf],
) -> Result<PathBuf, StorageError> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().await.map_err(|e| io_err(false, e))?;
    for p in receiving {
        if let Ok(pm) = tokio::fs::metadata(p).await {
            if pm.dev() == m.dev() && pm.ino() == m.ino() {
                return Ok(p.clone());
            }
        }
    }
    Err(io_err(
        false,
        Damage("a received snapshot is not one of the files begun for it".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{open_db, SLED_DIR, SNAPSHOT_DIR};
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
        let sm = StateMachine::open(
            &db,
            &snapfile::dir_for(&dir.join(SLED_DIR)),
            tx,
            Arc::new(NoHook),
            Default::default(),
        )
        .unwrap();
        (sm, rx)
    }

    /// The snapshot as the follower receives it: streamed into a file it began.
    async fn sent(to: &mut StateMachine, mut from: Box<tokio::fs::File>) -> Box<tokio::fs::File> {
        let mut file = to.begin_receiving_snapshot().await.unwrap();
        tokio::io::copy(&mut from, &mut file).await.unwrap();
        file
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
        let received = sent(&mut follower, snap.snapshot).await;
        follower
            .install_snapshot(&snap.meta, received)
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

    /// Every byte of `from`, read from its start.
    async fn bytes_of(mut from: Box<tokio::fs::File>) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        from.seek(std::io::SeekFrom::Start(0)).await.unwrap();
        let mut v = Vec::new();
        from.read_to_end(&mut v).await.unwrap();
        v
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A state machine in `dir` with one registration applied, and a snapshot of it.
    async fn one_registration_snapshot(dir: &Path) -> (StateMachine, Snapshot<TypeConfig>) {
        let (mut sm, _) = machine(dir);
        sm.apply([registration(1, "a", None)]).await.unwrap();
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        (sm, snap)
    }

    #[tokio::test]
    async fn a_damaged_snapshot_transfer_is_refused_and_the_follower_keeps_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_sm, snap) = one_registration_snapshot(dir.path()).await;
        let mut bytes = bytes_of(snap.snapshot).await;
        let n = bytes.len();
        bytes[n / 2] ^= 0x20;

        let dir2 = tempfile::tempdir().unwrap();
        let (mut follower, rx2) = machine(dir2.path());
        follower.apply([registration(1, "z", None)]).await.unwrap();
        let mut file = follower.begin_receiving_snapshot().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
            .await
            .unwrap();
        let err = follower
            .install_snapshot(&snap.meta, file)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert_eq!(current_seq(&rx2).0, "z", "the state is untouched");
        let snaps = dir2.path().join(SNAPSHOT_DIR);
        assert!(files_in(&snaps).is_empty(), "{:?}", files_in(&snaps));
        assert!(follower.get_current_snapshot().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_snapshot_an_older_version_kept_inside_sled_moves_to_a_file_and_restores() {
        let dir = tempfile::tempdir().unwrap();
        let (sm, snap) = one_registration_snapshot(dir.path()).await;
        // Stored as an older version did: the JSON, sealed, inside sled.
        let sealed = seal(
            &serde_json::to_vec(&SnapshotBodyRef {
                state: &sm.state,
                once: &sm.once.to_list(),
            })
            .unwrap(),
        );
        let dir2 = tempfile::tempdir().unwrap();
        {
            let db = open_db(&dir2.path().join(SLED_DIR)).unwrap();
            let t = db.open_tree("snapshots").unwrap();
            t.insert(
                KEY_SNAPSHOT_META,
                seal(&serde_json::to_vec(&snap.meta).unwrap()),
            )
            .unwrap();
            t.insert(KEY_SNAPSHOT_DATA, sealed).unwrap();
            db.flush().unwrap();
        }
        let (mut moved, rx) = machine(dir2.path());
        assert_eq!(current_seq(&rx).0, "a");
        assert_eq!(files_in(&dir2.path().join(SNAPSHOT_DIR)).len(), 1);
        assert!(moved.snapshots.get(KEY_SNAPSHOT_DATA).unwrap().is_none());
        assert_eq!(
            moved.get_current_snapshot().await.unwrap().unwrap().meta,
            snap.meta
        );
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
