//! Durable Raft storage in sled: the log, the vote, and FSM snapshots (files beside sled,
//! recorded in it).
//!
//! Every sled call of the server lives in this module (`store/`), so swapping the engine
//! (redb, fjall) stays a change to this directory only. Writes that Raft relies on
//! (appends, votes) are flushed to disk before they are acknowledged: sled alone only
//! syncs every 500 ms.
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
//!
//! One concern per file:
//! - this file: the sled database, its keys, and the log store ([`LogStore`], openraft's
//!   `RaftLogStorage`);
//! - `records.rs`: the checksummed record framing ([`seal`], [`unseal`], [`Damage`]);
//! - `marks.rs`: the `raft.marks` side file ([`Marks`]);
//! - `verify.rs`: the startup checks ([`open_verified`]);
//! - `snapfile.rs`: snapshot files, streamed to and from disk and checksummed;
//! - `machine.rs`: the state machine ([`StateMachine`], openraft's `RaftStateMachine`),
//!   the snapshot builder and the once-token table ([`OnceTable`]).

// openraft's traits fix `StorageError` (large) as the error type; our helpers match them.
#![allow(clippy::result_large_err)]

mod machine;
mod marks;
mod records;
mod snapfile;
mod verify;

pub use machine::{ApplyHook, OnceTable, SnapshotBuilder, StateMachine};
pub use marks::{MarkState, Marks};
pub use records::{seal, seal_compressed, unseal, Damage};
pub use snapfile::{dir_for as snapshot_dir, SNAPSHOT_DIR};
pub use verify::{open_verified, Verified};

use super::{io_err, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogState, RaftLogReader, Vote};
use records::{decode, decode_entry, log_key, payload_len};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
/// A snapshot kept inside sled, before snapshot files: read once and moved to a file.
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";
/// The current snapshot's file (`snapfile::FileRecord`).
const KEY_SNAPSHOT_FILE: &[u8] = b"snapshot_file";

/// At most this much log entry JSON goes to a follower in one AppendEntries (one entry
/// over it goes alone). openraft cuts every AppendEntries off at the heartbeat interval
/// and sends the same batch again; 32 entries of large plans were tens of megabytes, which
/// a loaded follower (a debug build in the test suite) could not decode and flush in
/// time, again and again, until the cluster lost its leader.
pub const MAX_APPEND_BATCH_BYTES: usize = 4 << 20;

/// The sled database inside a data dir.
pub const SLED_DIR: &str = "raft.sled";
/// The side file with the vote and the last flushed log index.
pub const MARKS_FILE: &str = "raft.marks";

/// Open (or create) a sled database. A panic inside sled's recovery (it has a few on
/// damaged files) is turned into an error.
pub fn open_db(dir: &Path) -> Result<sled::Db, String> {
    let cfg = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        // sled caches up to 1 GiB by default; the state lives in memory already.
        .cache_capacity(32 * 1024 * 1024);
    // sled's background flusher can hold the file lock for a moment after the last handle
    // of an earlier open in this process is dropped: wait briefly for it, never forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let open = || loop {
        match cfg.open() {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
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

    /// Delete the log entries whose keys (big-endian indexes) fall in `range`, in one batch.
    fn remove_logs(&self, range: impl std::ops::RangeBounds<[u8; 8]>) -> Result<(), StorageError> {
        let keys: Vec<_> = self
            .logs
            .range(range)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| io_err(true, e))?;
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        self.logs.apply_batch(batch).map_err(|e| io_err(true, e))
    }

    /// Bytes sled uses on disk, for the load harness.
    pub fn disk_size(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Flush everything sled still buffers (the committed-index hint, purges), for a clean
    /// shutdown; appends and votes were flushed when they were written.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await.map_err(|e| io_err(true, e))?;
        Ok(())
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

    /// The entries from `start` up to `end` that fit [`MAX_APPEND_BATCH_BYTES`] of JSON
    /// (at least one): what openraft sends a follower in one AppendEntries. A count
    /// alone does not bound a request: a plan of a thousand allocations is megabytes.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.entries_within(start, end, MAX_APPEND_BATCH_BYTES)
    }
}

impl LogStore {
    /// The entries from `start` up to `end` that fit `budget` bytes of JSON (at least one).
    fn entries_within(
        &self,
        start: u64,
        end: u64,
        budget: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for kv in self.logs.range(start.to_be_bytes()..) {
            let (k, v) = kv.map_err(|e| io_err(false, e))?;
            let idx = log_key(&k).map_err(|e| io_err(false, e))?;
            if idx >= end {
                break;
            }
            let len = payload_len(&v);
            if !out.is_empty() && bytes + len > budget {
                break;
            }
            bytes += len;
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
            batch.insert(&e.log_id.index.to_be_bytes(), seal_compressed(&bytes));
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
        self.remove_logs(log_id.index.to_be_bytes()..)?;
        self.db.flush_async().await.map_err(|e| io_err(true, e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        put_json(&self.meta, KEY_PURGED, &log_id)?;
        self.remove_logs(..=log_id.index.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A log entry at `index` whose JSON is about `size` bytes.
    fn entry_of(index: u64, size: usize) -> Entry<TypeConfig> {
        let cmd = crate::fsm::Command::UpdateNodeStatus {
            node_id: "n".repeat(size),
            status: "ready".into(),
            now: 0,
            evals: Vec::new(),
            if_status: None,
            alloc_updates: Vec::new(),
        };
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(crate::raft::Proposal { once: None, cmd }),
        }
    }

    #[tokio::test]
    async fn a_follower_is_sent_a_few_megabytes_of_entries_at_a_time_never_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
        let marks =
            marks::Marks::open(&dir.path().join(MARKS_FILE), 0, marks::MarkState::default())
                .unwrap();
        let mut store = LogStore::new(&db, marks).unwrap();
        // A small budget keeps the test light (sled's background threads are shared with
        // the other store tests): ten entries of a quarter of it, then one of twice it,
        // then small ones.
        const BUDGET: usize = 16 * 1024;
        let quarter = BUDGET / 4;
        let sizes: Vec<usize> = (1..=10)
            .map(|_| quarter)
            .chain([2 * BUDGET, 100, 100])
            .collect();
        for (i, size) in sizes.iter().enumerate() {
            let e = entry_of(i as u64 + 1, *size);
            let json = serde_json::to_vec(&e).unwrap();
            store
                .logs
                .insert((i as u64 + 1).to_be_bytes(), seal_compressed(&json))
                .unwrap();
        }
        let indexes =
            |es: &[Entry<TypeConfig>]| es.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        // Four quarters and a bit would pass the budget: three go (each is a quarter plus
        // its JSON framing).
        let first = store.entries_within(1, 14, BUDGET).unwrap();
        assert_eq!(indexes(&first), vec![1, 2, 3]);
        // The range's end is kept.
        let short = store.entries_within(4, 6, BUDGET).unwrap();
        assert_eq!(indexes(&short), vec![4, 5]);
        // An entry over the budget goes alone, never held back.
        let big = store.entries_within(11, 14, BUDGET).unwrap();
        assert_eq!(indexes(&big), vec![11]);
        let rest = store.entries_within(12, 14, BUDGET).unwrap();
        assert_eq!(indexes(&rest), vec![12, 13]);
        // What openraft calls: the same walk with the 4 MiB budget, which all of these fit.
        let all = store.limited_get_log_entries(1, 14).await.unwrap();
        assert_eq!(indexes(&all), (1..=13).collect::<Vec<u64>>());
        // What was sent decodes to what was stored.
        assert_eq!(
            serde_json::to_value(&first[0]).unwrap(),
            serde_json::to_value(entry_of(1, quarter)).unwrap()
        );
    }

    /// Every `.rs` file under `dir`, recursively.
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_server_code_outside_the_store_module_names_sled() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let store = src.join("raft").join("store");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(
            files.iter().any(|f| f.starts_with(&store)),
            "the scan found no file of the store module under {}",
            src.display()
        );
        let offenders: Vec<String> = files
            .iter()
            .filter(|f| !f.starts_with(&store))
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                let rel = f.strip_prefix(&src).unwrap().display().to_string();
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains("sled::") && !l.trim_start().starts_with("//"))
                    .map(|(n, l)| format!("{rel}:{}: {}", n + 1, l.trim()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "sled is used outside server/src/raft/store/ (move the call into the store module):\n{}",
            offenders.join("\n")
        );
    }
}
