//! Durable Raft storage in sled: the log, the vote, and FSM snapshots.
//!
//! Every sled use of the server lives in this file, so swapping the engine (redb, fjall)
//! stays a one-file change. Writes that Raft relies on (appends, votes) are flushed to
//! disk before they are acknowledged: sled alone only syncs every 500 ms.
//!
//! A damaged data dir is never served silently:
//! - every stored record (log entry, vote, committed index, purge point, snapshot and its
//!   meta) is sealed with a CRC-32 of its bytes, checked on every read;
//! - sled stops its own recovery at the first damaged segment and quietly drops what
//!   follows, so a small side file (`raft.marks`, two checksummed slots written in turn)
//!   records the newest vote and the last log index flushed; a sled that comes back with
//!   less than that lost acknowledged data;
//! - [`open_verified`] reads everything once at startup: every record's checksum, a log
//!   contiguous from the snapshot to its last entry, a committed index the log covers.

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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

/// The sled database inside a data dir.
pub const SLED_DIR: &str = "raft.sled";
/// The side file with the vote and the last flushed log index.
pub const MARKS_FILE: &str = "raft.marks";

/// A record's first byte: the framing version.
const RECORD_V1: u8 = 1;
const RECORD_HEADER: usize = 5;

/// Stored data that fails a check: what is wrong, as a sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Damage(pub String);

/// Frame a record: version byte, CRC-32 (little endian) of the payload, the payload.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.push(RECORD_V1);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Check a record's frame and checksum; `what` names it in the error.
pub fn unseal<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8], Damage> {
    if bytes.len() < RECORD_HEADER || bytes[0] != RECORD_V1 {
        return Err(Damage(format!(
            "record {what} has no valid checksum header ({} bytes)",
            bytes.len()
        )));
    }
    let want = u32::from_le_bytes(bytes[1..RECORD_HEADER].try_into().expect("4 bytes"));
    let payload = &bytes[RECORD_HEADER..];
    let got = crc32fast::hash(payload);
    if want != got {
        return Err(Damage(format!(
            "record {what} fails its checksum (stored {want:08x}, computed {got:08x})"
        )));
    }
    Ok(payload)
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, Damage> {
    serde_json::from_slice(unseal(what, bytes)?).map_err(|e| {
        Damage(format!(
            "record {what} passes its checksum but does not parse: {e}"
        ))
    })
}

/// Open (or create) a sled database. A panic inside sled's recovery (it has a few on
/// damaged files) is turned into an error.
pub fn open_db(dir: &Path) -> Result<sled::Db, String> {
    let cfg = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        // sled caches up to 1 GiB by default; the state lives in memory already.
        .cache_capacity(32 * 1024 * 1024);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cfg.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .map(|m| format!("sled panicked while recovering: {m}"))
            .unwrap_or_else(|| "sled panicked while recovering".into())),
    }
}

fn get_json<T: for<'de> Deserialize<'de>>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<T>, StorageError> {
    match tree.get(key).map_err(|e| io_err(false, e))? {
        None => Ok(None),
        Some(v) => decode(&String::from_utf8_lossy(key), &v)
            .map(Some)
            .map_err(|e| io_err(false, e)),
    }
}

fn put_json<T: Serialize>(tree: &sled::Tree, key: &[u8], v: &T) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(v).map_err(|e| io_err(true, e))?;
    tree.insert(key, seal(&bytes))
        .map_err(|e| io_err(true, e))?;
    Ok(())
}

fn log_key(k: &[u8]) -> Result<u64, Damage> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Damage(format!("a log key is {} bytes long, not 8", k.len())))
}

fn decode_entry(k: &[u8], v: &[u8]) -> Result<Entry<TypeConfig>, Damage> {
    let idx = log_key(k)?;
    let e: Entry<TypeConfig> = decode(&format!("log entry {idx}"), v)?;
    if e.log_id.index != idx {
        return Err(Damage(format!(
            "log entry stored under index {idx} says it is entry {}",
            e.log_id.index
        )));
    }
    Ok(e)
}

/// What `raft.marks` remembers: sled must come back with at least this much.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarkState {
    pub vote: Option<Vote<NodeId>>,
    /// Index of the last log entry flushed to sled (lowered before a truncation).
    pub last_index: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct MarkSlot {
    seq: u64,
    state: MarkState,
}

const MARK_SLOT: usize = 512;

struct MarksFile {
    file: std::fs::File,
    seq: u64,
    state: MarkState,
}

/// The `raft.marks` side file: two fixed slots, each `[crc32][len][json]`, written in turn
/// with a data sync, so a torn write leaves the other slot intact.
#[derive(Clone)]
pub struct Marks {
    path: PathBuf,
    inner: Arc<Mutex<MarksFile>>,
}

impl Marks {
    /// Read the newest valid slot; `None` when the file does not exist.
    fn read(path: &Path) -> Result<Option<(u64, MarkState)>, Damage> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Damage(format!("cannot read {}: {e}", path.display()))),
        };
        let mut best: Option<(u64, MarkState)> = None;
        for slot in bytes.chunks(MARK_SLOT).take(2) {
            if slot.len() < 8 {
                continue;
            }
            let crc = u32::from_le_bytes(slot[0..4].try_into().expect("4 bytes"));
            let len = u32::from_le_bytes(slot[4..8].try_into().expect("4 bytes")) as usize;
            let Some(payload) = slot.get(8..8 + len) else {
                continue;
            };
            if crc32fast::hash(payload) != crc {
                continue;
            }
            if let Ok(s) = serde_json::from_slice::<MarkSlot>(payload) {
                if best.as_ref().is_none_or(|(seq, _)| s.seq > *seq) {
                    best = Some((s.seq, s.state));
                }
            }
        }
        match best {
            Some(b) => Ok(Some(b)),
            None => Err(Damage(format!(
                "{} has no slot that passes its checksum ({} bytes)",
                path.display(),
                bytes.len()
            ))),
        }
    }

    fn open(path: &Path, seq: u64, state: MarkState) -> Result<Marks, Damage> {
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Damage(format!("cannot open {}: {e}", path.display())))?;
        let marks = Marks {
            path: path.to_path_buf(),
            inner: Arc::new(Mutex::new(MarksFile { file, seq, state })),
        };
        if !existed {
            let state = marks.state();
            marks
                .write_sync(state)
                .map_err(|e| Damage(format!("cannot write {}: {e}", path.display())))?;
            // Make the new file's name durable too.
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Damage(format!("cannot sync {}: {e}", dir.display())))?;
            }
        }
        Ok(marks)
    }

    pub fn state(&self) -> MarkState {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state
            .clone()
    }

    fn write_sync(&self, state: MarkState) -> std::io::Result<()> {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seq = m.seq + 1;
        let payload = serde_json::to_vec(&MarkSlot {
            seq,
            state: state.clone(),
        })
        .map_err(std::io::Error::other)?;
        if payload.len() > MARK_SLOT - 8 {
            return Err(std::io::Error::other(format!(
                "{}: a mark of {} bytes does not fit its slot",
                self.path.display(),
                payload.len()
            )));
        }
        let mut slot = vec![0u8; MARK_SLOT];
        slot[0..4].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        slot[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        slot[8..8 + payload.len()].copy_from_slice(&payload);
        m.file.write_all_at(&slot, (seq % 2) * MARK_SLOT as u64)?;
        m.file.sync_data()?;
        m.seq = seq;
        m.state = state;
        Ok(())
    }

    /// Durably record `update(state)`, off the async runtime.
    async fn update(&self, update: impl FnOnce(&mut MarkState)) -> Result<(), StorageError> {
        let mut state = self.state();
        update(&mut state);
        if state == self.state() {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_sync(state))
            .await
            .map_err(|e| io_err(true, e))?
            .map_err(|e| io_err(true, e))
    }
}

/// What [`open_verified`] found, for the startup log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verified {
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub committed: Option<u64>,
    /// The newest index sled knows of: last entry, purge point or snapshot.
    pub end_index: Option<u64>,
}

/// Open the Raft storage of `data_dir` and prove it whole before anything serves from it:
/// every record passes its checksum, the log runs without a gap from the snapshot to its
/// last entry, the committed index is covered, and sled holds at least the vote and log
/// that `raft.marks` says were flushed. Any failure names the file that is damaged.
pub fn open_verified(data_dir: &Path) -> Result<(sled::Db, Marks, Verified), Damage> {
    let sled_path = data_dir.join(SLED_DIR);
    let marks_path = data_dir.join(MARKS_FILE);
    let fresh = !sled_path.exists();
    let marks = Marks::read(&marks_path)?;
    let db = open_db(&sled_path)
        .map_err(|e| Damage(format!("{} cannot be opened: {e}", sled_path.display())))?;
    let sled_damage = |m: String| Damage(format!("{}: {m}", sled_path.display()));
    let verified = verify(&db).map_err(|d| sled_damage(d.0))?;
    let holds_data = verified.last_index.is_some() || verified.snapshot_index.is_some();
    let (seq, state) = match marks {
        Some(m) => m,
        None if fresh || !holds_data => (0, MarkState::default()),
        None => {
            return Err(Damage(format!(
                "{} is missing although {} holds Raft data (up to index {})",
                marks_path.display(),
                sled_path.display(),
                verified.last_index.unwrap_or(0)
            )))
        }
    };
    // The vote sled returns must be at least the one the marks saw flushed.
    let vote: Option<Vote<NodeId>> = read_meta(&db, KEY_VOTE).map_err(|d| sled_damage(d.0))?;
    if let Some(marked) = &state.vote {
        let ok = vote.as_ref().is_some_and(|v| {
            matches!(
                v.partial_cmp(marked),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            )
        });
        if !ok {
            return Err(sled_damage(format!(
                "the stored vote ({vote:?}) is older than the one {} recorded ({marked:?}): sled lost flushed writes",
                marks_path.display()
            )));
        }
    }
    if let Some(marked) = state.last_index {
        let have = verified.end_index;
        if have.is_none_or(|h| h < marked) {
            return Err(sled_damage(format!(
                "the log ends at index {} but entry {marked} was flushed and acknowledged ({} says so): sled lost flushed writes",
                have.map(|h| h.to_string()).unwrap_or_else(|| "(empty)".into()),
                marks_path.display()
            )));
        }
    }
    let marks = Marks::open(&marks_path, seq, state)?;
    Ok((db, marks, verified))
}

fn read_meta<T: for<'de> Deserialize<'de>>(db: &sled::Db, key: &[u8]) -> Result<Option<T>, Damage> {
    let tree = db
        .open_tree("meta")
        .map_err(|e| Damage(format!("cannot open its meta tree: {e}")))?;
    match tree
        .get(key)
        .map_err(|e| Damage(format!("cannot read {}: {e}", String::from_utf8_lossy(key))))?
    {
        None => Ok(None),
        Some(v) => decode(&String::from_utf8_lossy(key), &v).map(Some),
    }
}

/// Read every record once and check the log's shape.
fn verify(db: &sled::Db) -> Result<Verified, Damage> {
    let tree = |name: &str| {
        db.open_tree(name)
            .map_err(|e| Damage(format!("cannot open its {name} tree: {e}")))
    };
    let (logs, snapshots) = (tree("logs")?, tree("snapshots")?);
    let _vote: Option<Vote<NodeId>> = read_meta(db, KEY_VOTE)?;
    let committed: Option<LogId> = read_meta::<Option<LogId>>(db, KEY_COMMITTED)?.flatten();
    let purged: Option<LogId> = read_meta(db, KEY_PURGED)?;
    let sread = |key: &[u8]| {
        snapshots
            .get(key)
            .map_err(|e| Damage(format!("cannot read {}: {e}", String::from_utf8_lossy(key))))
    };
    let snap_meta: Option<SnapshotMeta<NodeId, ServerNode>> = match sread(KEY_SNAPSHOT_META)? {
        None => None,
        Some(v) => Some(decode("snapshot_meta", &v)?),
    };
    let snapshot_index = match (&snap_meta, sread(KEY_SNAPSHOT_DATA)?) {
        (None, None) => None,
        (Some(m), Some(data)) => {
            unseal("snapshot_data", &data)?;
            m.last_log_id.map(|l| l.index)
        }
        (Some(_), None) => {
            return Err(Damage(
                "the snapshot's meta exists but its data is missing".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Damage(
                "the snapshot's data exists but its meta is missing".into(),
            ))
        }
    };
    let mut first = None;
    let mut last: Option<u64> = None;
    for kv in logs.iter() {
        let (k, v) = kv.map_err(|e| Damage(format!("cannot read the log: {e}")))?;
        let idx = decode_entry(&k, &v)?.log_id.index;
        if let Some(prev) = last {
            if idx != prev + 1 {
                return Err(Damage(format!(
                    "the log has a gap: entry {prev} is followed by entry {idx}"
                )));
            }
        }
        first.get_or_insert(idx);
        last = Some(idx);
    }
    if let Some(p) = purged {
        if snapshot_index.is_none_or(|s| s < p.index) {
            return Err(Damage(format!(
                "the log was purged up to index {} but no snapshot covers it (snapshot: {snapshot_index:?})",
                p.index
            )));
        }
    }
    if let Some(f) = first {
        // Entries must continue the snapshot (or the purge point, or start the log).
        let covered_to = snapshot_index.max(purged.map(|p| p.index));
        let ok = match covered_to {
            Some(c) => f <= c + 1,
            None => f <= 1,
        };
        if !ok {
            return Err(Damage(format!(
                "the log starts at entry {f} but the snapshot ends at {}: entries in between are missing",
                covered_to.map(|c| c.to_string()).unwrap_or_else(|| "(none)".into())
            )));
        }
    }
    let end = last.max(snapshot_index).max(purged.map(|p| p.index));
    if let Some(c) = committed {
        if end.is_none_or(|e| e < c.index) {
            return Err(Damage(format!(
                "entries up to {} were committed but the log ends at {}",
                c.index,
                end.map(|e| e.to_string())
                    .unwrap_or_else(|| "(empty)".into())
            )));
        }
    }
    Ok(Verified {
        first_index: first,
        last_index: last,
        snapshot_index,
        committed: committed.map(|c| c.index),
        end_index: end,
    })
}

/// The Raft log and vote. Cheap to clone: sled trees are reference-counted.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    logs: sled::Tree,
    meta: sled::Tree,
    marks: Marks,
}

impl LogStore {
    pub fn new(db: &sled::Db, marks: Marks) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
            marks,
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
            let idx = log_key(&k).map_err(|e| io_err(false, e))?;
            if !range.contains(&idx) {
                break;
            }
            out.push(decode_entry(&k, &v).map_err(|e| io_err(false, e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = get_json(&self.meta, KEY_PURGED)?;
        let last = match self.logs.last().map_err(|e| io_err(false, e))? {
            Some((k, v)) => Some(decode_entry(&k, &v).map_err(|e| io_err(false, e))?.log_id),
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
        let vote = *vote;
        self.marks.update(|m| m.vote = Some(vote)).await
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
        let mut last = None;
        for e in entries {
            let bytes = serde_json::to_vec(&e).map_err(|e| io_err(true, e))?;
            batch.insert(&e.log_id.index.to_be_bytes(), seal(&bytes));
            last = Some(e.log_id.index);
        }
        self.logs.apply_batch(batch).map_err(|e| io_err(true, e))?;
        // Group commit: one fsync covers every entry of this append; then the marks
        // record how far the log reaches, so a sled that loses its tail is caught.
        let res = match self.db.flush_async().await {
            Ok(_) => match last {
                Some(l) => self
                    .marks
                    .update(|m| m.last_index = Some(m.last_index.map_or(l, |p| p.max(l))))
                    .await
                    .map_err(std::io::Error::other),
                None => Ok(()),
            },
            Err(e) => Err(std::io::Error::other(e)),
        };
        callback.log_io_completed(res);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Lower the mark first: a crash in between leaves sled ahead of it, which is fine.
        let below = log_id.index.checked_sub(1);
        self.marks
            .update(|m| {
                if m.last_index > below {
                    m.last_index = below;
                }
            })
            .await?;
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
        self.hook.applied(&published, Effects::default());
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
                EntryPayload::Normal(p) => match p.once {
                    // Sent again after its outcome became unknown: answer as the first time.
                    Some(token) if self.once.get(&token).is_some() => {
                        self.state.index = index;
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
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// A data dir with entries `range` in its log, written the way the log store writes them.
    fn data_dir_with_log(range: std::ops::RangeInclusive<u64>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (db, marks, _) = open_verified(dir.path()).unwrap();
        let logs = db.open_tree("logs").unwrap();
        for i in range.clone() {
            let e = Entry::<TypeConfig> {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            };
            logs.insert(i.to_be_bytes(), seal(&serde_json::to_vec(&e).unwrap()))
                .unwrap();
        }
        let meta = db.open_tree("meta").unwrap();
        put_json(&meta, KEY_COMMITTED, &Some(log_id(*range.end()))).unwrap();
        db.flush().unwrap();
        marks
            .write_sync(MarkState {
                vote: None,
                last_index: Some(*range.end()),
            })
            .unwrap();
        dir
    }

    fn refusal(dir: &Path) -> String {
        match open_verified(dir) {
            Ok(_) => panic!("a damaged data dir was accepted"),
            Err(d) => d.0,
        }
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
            payload: EntryPayload::Normal(super::super::Proposal {
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
        assert_eq!(rx.borrow().index, 3);

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

    #[test]
    fn a_flipped_byte_fails_the_record_checksum() {
        let sealed = seal(b"{\"a\":1}");
        assert_eq!(unseal("x", &sealed).unwrap(), b"{\"a\":1}");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(
                unseal("x", &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(unseal("x", &sealed[..3]).is_err());
        // Records from before checksums (bare JSON) are refused too.
        assert!(unseal("x", b"{\"a\":1}").is_err());
    }

    #[test]
    fn a_whole_log_verifies_and_reopens() {
        let dir = data_dir_with_log(0..=20);
        let (_, marks, v) = open_verified(dir.path()).unwrap();
        assert_eq!(v.first_index, Some(0));
        assert_eq!(v.last_index, Some(20));
        assert_eq!(v.committed, Some(20));
        assert_eq!(marks.state().last_index, Some(20));
    }

    #[test]
    fn a_gap_in_the_log_refuses_to_open_naming_the_file() {
        let dir = data_dir_with_log(0..=20);
        {
            let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
            db.open_tree("logs")
                .unwrap()
                .remove(7u64.to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let msg = refusal(dir.path());
        assert!(msg.contains("raft.sled"), "{msg}");
        assert!(msg.contains("entry 6 is followed by entry 8"), "{msg}");
    }

    #[test]
    fn a_damaged_entry_refuses_to_open() {
        let dir = data_dir_with_log(0..=20);
        {
            let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
            let logs = db.open_tree("logs").unwrap();
            let mut v = logs.get(5u64.to_be_bytes()).unwrap().unwrap().to_vec();
            let mid = v.len() / 2;
            v[mid] ^= 0xff;
            logs.insert(5u64.to_be_bytes(), v).unwrap();
            db.flush().unwrap();
        }
        let msg = refusal(dir.path());
        assert!(msg.contains("log entry 5 fails its checksum"), "{msg}");
    }

    #[test]
    fn a_log_shorter_than_the_marks_refuses_to_open() {
        // What sled does when it meets a damaged segment: it drops the tail quietly.
        let dir = data_dir_with_log(0..=20);
        {
            let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
            let logs = db.open_tree("logs").unwrap();
            for i in 15..=20u64 {
                logs.remove(i.to_be_bytes()).unwrap();
            }
            let meta = db.open_tree("meta").unwrap();
            put_json(&meta, KEY_COMMITTED, &Some(log_id(14))).unwrap();
            db.flush().unwrap();
        }
        let msg = refusal(dir.path());
        assert!(
            msg.contains("the log ends at index 14 but entry 20 was flushed"),
            "{msg}"
        );
    }

    #[test]
    fn a_committed_index_past_the_log_refuses_to_open() {
        let dir = data_dir_with_log(0..=20);
        {
            let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
            let meta = db.open_tree("meta").unwrap();
            put_json(&meta, KEY_COMMITTED, &Some(log_id(30))).unwrap();
            db.flush().unwrap();
        }
        let msg = refusal(dir.path());
        assert!(msg.contains("up to 30 were committed"), "{msg}");
    }

    #[test]
    fn a_log_that_does_not_reach_back_to_its_snapshot_refuses_to_open() {
        let dir = data_dir_with_log(10..=20);
        let msg = refusal(dir.path());
        assert!(msg.contains("the log starts at entry 10"), "{msg}");
    }

    #[test]
    fn missing_marks_next_to_a_log_refuse_to_open() {
        let dir = data_dir_with_log(0..=3);
        std::fs::remove_file(dir.path().join(MARKS_FILE)).unwrap();
        let msg = refusal(dir.path());
        assert!(msg.contains("raft.marks is missing"), "{msg}");
    }

    #[test]
    fn a_torn_marks_slot_falls_back_to_the_other_and_both_torn_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MARKS_FILE);
        let marks = Marks::open(&path, 0, MarkState::default()).unwrap();
        for i in 1..=3 {
            marks
                .write_sync(MarkState {
                    vote: None,
                    last_index: Some(i),
                })
                .unwrap();
        }
        let (seq, state) = Marks::read(&path).unwrap().unwrap();
        assert_eq!((seq, state.last_index), (4, Some(3)));
        // Tear the newest slot (seq 4 lives in slot 0): the older one answers.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (seq, state) = Marks::read(&path).unwrap().unwrap();
        assert_eq!((seq, state.last_index), (3, Some(2)));
        bytes[MARK_SLOT + 20] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = Marks::read(&path).unwrap_err();
        assert!(err.0.contains("no slot that passes its checksum"), "{err}");
    }
}
