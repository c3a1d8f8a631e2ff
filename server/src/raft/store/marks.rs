//! The `raft.marks` side file. sled stops its own recovery at the first damaged segment and
//! quietly drops what follows, so this small file (two checksummed slots written in turn,
//! each with a data sync) records the newest vote and the last log index flushed; a sled
//! that comes back with less than that lost acknowledged data. Plain files, no sled.

use super::super::{io_err, NodeId, StorageError};
use super::records::Damage;
use openraft::Vote;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    pub(super) fn read(path: &Path) -> Result<Option<(u64, MarkState)>, Damage> {
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

    pub(super) fn open(path: &Path, seq: u64, state: MarkState) -> Result<Marks, Damage> {
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

    pub(super) fn write_sync(&self, state: MarkState) -> std::io::Result<()> {
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
    pub(super) async fn update(
        &self,
        update: impl FnOnce(&mut MarkState),
    ) -> Result<(), StorageError> {
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

#[cfg(test)]
mod tests {
    use super::super::MARKS_FILE;
    use super::*;

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
