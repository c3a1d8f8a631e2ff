//! [`open_verified`]: the startup checks. Before anything serves from a data dir, every
//! record is read once and checked (its checksum, a log contiguous from the snapshot to its
//! last entry, a committed index the log covers) and compared with what `raft.marks` says
//! was flushed. Any failure is a [`Damage`] naming the file.

use super::super::{LogId, NodeId, ServerNode};
use super::marks::{MarkState, Marks};
use super::records::{decode, decode_entry, unseal, Damage};
use super::snapfile::{self, FileRecord};
use super::{
    open_db, KEY_COMMITTED, KEY_PURGED, KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_FILE, KEY_SNAPSHOT_META,
    KEY_VOTE, MARKS_FILE, SLED_DIR,
};
use openraft::{SnapshotMeta, Vote};
use serde::Deserialize;
use std::path::Path;

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
    let verified = verify(&db, &snapfile::dir_for(&sled_path)).map_err(|d| sled_damage(d.0))?;
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
fn verify(db: &sled::Db, snapshot_dir: &Path) -> Result<Verified, Damage> {
    let tree = |name: &str| {
        db.open_tree(name)
            .map_err(|e| Damage(format!("cannot open its {name} tree: {e}")))
    };
    let (logs, snapshots) = (tree("logs")?, tree("snapshots")?);
    let _vote: Option<Vote<NodeId>> = read_meta(db, KEY_VOTE)?;
    let committed: Option<LogId> = read_meta::<Option<LogId>>(db, KEY_COMMITTED)?.flatten();
    let purged: Option<LogId> = read_meta(db, KEY_PURGED)?;
    let snapshot_index = verify_snapshot(&snapshots, snapshot_dir)?;
    let (first, last) = verify_log(&logs)?;
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

/// Check the stored snapshot (its meta, and its file or, from before snapshot files, its
/// data inside sled: both present, every checksum passing); the index it ends at, if
/// there is one.
fn verify_snapshot(snapshots: &sled::Tree, dir: &Path) -> Result<Option<u64>, Damage> {
    let sread = |key: &[u8]| {
        snapshots
            .get(key)
            .map_err(|e| Damage(format!("cannot read {}: {e}", String::from_utf8_lossy(key))))
    };
    let snap_meta: Option<SnapshotMeta<NodeId, ServerNode>> = match sread(KEY_SNAPSHOT_META)? {
        None => None,
        Some(v) => Some(decode("snapshot_meta", &v)?),
    };
    let file: Option<FileRecord> = match sread(KEY_SNAPSHOT_FILE)? {
        None => None,
        Some(v) => Some(decode("snapshot_file", &v)?),
    };
    let inline = sread(KEY_SNAPSHOT_DATA)?;
    match (&snap_meta, file, inline) {
        (None, None, None) => Ok(None),
        (Some(m), Some(rec), _) => {
            snapfile::verify(&dir.join(&rec.name), Some(&rec))?;
            Ok(m.last_log_id.map(|l| l.index))
        }
        (Some(m), None, Some(data)) => {
            unseal("snapshot_data", &data)?;
            Ok(m.last_log_id.map(|l| l.index))
        }
        (Some(_), None, None) => Err(Damage(
            "the snapshot's meta exists but its data is missing".into(),
        )),
        (None, _, _) => Err(Damage(
            "the snapshot's data exists but its meta is missing".into(),
        )),
    }
}

/// Decode every log entry and check they follow each other without a gap; the first and
/// last index, if the log holds any entry.
fn verify_log(logs: &sled::Tree) -> Result<(Option<u64>, Option<u64>), Damage> {
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
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::super::super::TypeConfig;
    use super::super::{put_json, records::seal};
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

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

    /// A key and the bytes stored under it.
    type Record<'a> = (&'a [u8], &'a [u8]);

    #[test]
    fn a_snapshot_file_missing_damaged_or_swapped_refuses_to_open() {
        let meta = SnapshotMeta::<NodeId, ServerNode> {
            last_log_id: Some(log_id(3)),
            last_membership: Default::default(),
            snapshot_id: "1-3-x".into(),
        };
        let meta = seal(&serde_json::to_vec(&meta).unwrap());
        // Each case: what is done to the data dir after a whole snapshot is stored, and
        // what the refusal must say.
        type Spoil = fn(&Path, &Path);
        let cases: [(Spoil, &str); 4] = [
            (|_, f| std::fs::remove_file(f).unwrap(), "cannot be read"),
            (
                |_, f| {
                    let mut b = std::fs::read(f).unwrap();
                    let n = b.len();
                    b[n - 2] ^= 1;
                    std::fs::write(f, b).unwrap();
                },
                "fails its checksum",
            ),
            (
                |_, f| std::fs::write(f, seal(b"{\"other\":1}")).unwrap(),
                "is not the snapshot recorded",
            ),
            (
                |dir, _| {
                    let db = open_db(&dir.join(SLED_DIR)).unwrap();
                    db.open_tree("snapshots")
                        .unwrap()
                        .remove(KEY_SNAPSHOT_META)
                        .unwrap();
                    db.flush().unwrap();
                },
                "its meta is missing",
            ),
        ];
        let stored = || {
            let dir = data_dir_with_log(0..=3);
            let sdir = snapfile::dir_for(&dir.path().join(SLED_DIR));
            let rec = snapfile::write(&sdir, "snap.json", |w| w.write_all(b"{\"a\":1}")).unwrap();
            {
                let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
                let snapshots = db.open_tree("snapshots").unwrap();
                snapshots.insert(KEY_SNAPSHOT_META, meta.clone()).unwrap();
                snapshots
                    .insert(KEY_SNAPSHOT_FILE, seal(&serde_json::to_vec(&rec).unwrap()))
                    .unwrap();
                db.flush().unwrap();
            }
            let file = sdir.join(&rec.name);
            (dir, file)
        };
        for (spoil, want) in cases {
            let (dir, file) = stored();
            spoil(dir.path(), &file);
            let msg = refusal(dir.path());
            assert!(msg.contains(want), "{msg}");
        }
        let (dir, _) = stored();
        let (_, _, v) = open_verified(dir.path()).unwrap();
        assert_eq!(v.snapshot_index, Some(3));
    }

    /// Data dirs from before snapshot files kept the snapshot inside sled.
    #[test]
    fn a_snapshot_with_half_missing_or_a_damaged_body_refuses_to_open() {
        let meta = SnapshotMeta::<NodeId, ServerNode> {
            last_log_id: Some(log_id(3)),
            last_membership: Default::default(),
            snapshot_id: "1-3-2".into(),
        };
        let meta = seal(&serde_json::to_vec(&meta).unwrap());
        let data = seal(b"{}");
        let cases: [(&[Record], &str); 3] = [
            (
                &[(KEY_SNAPSHOT_META, &meta)],
                "the snapshot's meta exists but its data is missing",
            ),
            (
                &[(KEY_SNAPSHOT_DATA, &data)],
                "the snapshot's data exists but its meta is missing",
            ),
            (
                &[
                    (KEY_SNAPSHOT_META, &meta),
                    (KEY_SNAPSHOT_DATA, b"\x01\0\0\0\0{}"),
                ],
                "record snapshot_data fails its checksum",
            ),
        ];
        for (records, want) in cases {
            let dir = data_dir_with_log(0..=3);
            {
                let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
                let snapshots = db.open_tree("snapshots").unwrap();
                for (k, v) in records {
                    snapshots.insert(k, v.to_vec()).unwrap();
                }
                db.flush().unwrap();
            }
            let msg = refusal(dir.path());
            assert!(msg.contains("raft.sled") && msg.contains(want), "{msg}");
        }
        // Both halves whole: the data dir opens and reports where the snapshot ends.
        let dir = data_dir_with_log(0..=3);
        {
            let db = open_db(&dir.path().join(SLED_DIR)).unwrap();
            let snapshots = db.open_tree("snapshots").unwrap();
            snapshots.insert(KEY_SNAPSHOT_META, meta.clone()).unwrap();
            snapshots.insert(KEY_SNAPSHOT_DATA, data.clone()).unwrap();
            db.flush().unwrap();
        }
        let (_, _, v) = open_verified(dir.path()).unwrap();
        assert_eq!(v.snapshot_index, Some(3));
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
}
