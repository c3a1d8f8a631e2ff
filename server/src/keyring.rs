//! The keyring: the root keys that seal Nomad Variables' items at rest (AES-256-GCM).
//!
//! Each server keeps its keys in `<data dir>/keyring/<key id>.key` (base64, mode 0600),
//! creating one on first start. New variables are sealed with the state's active root
//! key (the first one replicated); while the state has none, the leader replicates its
//! own key through Raft first (`Command::UpsertRootKey`), so every server, and one
//! restored from a snapshot, can open every variable. A key a server learns from the
//! state is written to its keyring directory too.
//!
//! Every write draws a fresh random 96-bit nonce; the namespace and path are bound in as
//! associated data, so sealed items cannot be moved to another variable.

use crate::state::{RootKey, StateStore, StoredVariable};
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

type KeyBytes = [u8; 32];

pub struct Keyring {
    dir: PathBuf,
    /// This server's own key: the one it replicates while the state has none.
    local_id: String,
    keys: Mutex<HashMap<String, KeyBytes>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("dir", &self.dir)
            .field("local_id", &self.local_id)
            .finish_non_exhaustive()
    }
}

fn decode_key(text: &str) -> Option<KeyBytes> {
    B64.decode(text.trim()).ok()?.try_into().ok()
}

/// Write a key file readable by its owner only, flushed to disk.
fn write_key_file(dir: &Path, id: &str, key: &KeyBytes) -> std::io::Result<()> {
    let path = dir.join(format!("{id}.key"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(B64.encode(key).as_bytes())?;
    f.sync_all()
}

fn aad(ns: &str, path: &str) -> Vec<u8> {
    format!("{ns}\0{path}").into_bytes()
}

impl Keyring {
    /// Load the keys in `<data_dir>/keyring`, creating the directory and a first key when
    /// there are none. A key file that cannot be read is an error naming it.
    pub fn open(data_dir: &Path) -> anyhow::Result<Keyring> {
        let dir = data_dir.join("keyring");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create the keyring {}: {e}", dir.display()))?;
        let mut keys = HashMap::new();
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| anyhow::anyhow!("cannot read the keyring {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
                .map(str::to_string)
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read the key {}: {e}", path.display()))?;
            let key = decode_key(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "the key file {} does not hold a base64 32-byte key; restore it from a \
                     backup (variables sealed with it cannot be read without it)",
                    path.display()
                )
            })?;
            keys.insert(id.clone(), key);
            names.push(id);
        }
        names.sort();
        let local_id = match names.into_iter().next() {
            Some(id) => id,
            None => {
                let id = api::new_id();
                let key: KeyBytes = Aes256Gcm::generate_key(&mut OsRng).into();
                write_key_file(&dir, &id, &key).map_err(|e| {
                    anyhow::anyhow!("cannot write a new key in {}: {e}", dir.display())
                })?;
                tracing::info!(key_id = %id, "created the keyring's first root key");
                keys.insert(id.clone(), key);
                id
            }
        };
        Ok(Keyring {
            dir,
            local_id,
            keys: Mutex::new(keys),
        })
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyBytes>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key `id`: from this server's keyring, else learnt from the replicated state
    /// (and then written to the keyring directory).
    fn key(&self, state: &StateStore, id: &str) -> Result<KeyBytes, String> {
        if let Some(k) = self.keys().get(id) {
            return Ok(*k);
        }
        let rk = state
            .root_keys()
            .get(id)
            .ok_or_else(|| format!("root key {id:?} is not in this server's keyring"))?;
        let key = decode_key(&rk.key).ok_or_else(|| format!("root key {id:?} is malformed"))?;
        if let Err(e) = write_key_file(&self.dir, id, &key) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                tracing::warn!(key_id = id, error = %e, "cannot save a replicated root key");
            }
        }
        self.keys().insert(id.to_string(), key);
        Ok(key)
    }

    /// The root key to replicate before sealing anything, when the state has none yet.
    pub fn key_to_replicate(&self, state: &StateStore, now: i64) -> Option<RootKey> {
        if state.active_root_key().is_some() {
            return None;
        }
        let key = *self.keys().get(&self.local_id)?;
        Some(RootKey {
            key_id: self.local_id.clone(),
            key: B64.encode(key),
            create_time: now,
            create_index: 0,
        })
    }

    /// Seal `items` for the variable at `(ns, path)` with the state's active root key.
    /// Indexes and times are left for the caller and the FSM.
    pub fn seal(
        &self,
        state: &StateStore,
        ns: &str,
        path: &str,
        items: &BTreeMap<String, String>,
    ) -> Result<StoredVariable, String> {
        let active = state
            .active_root_key()
            .ok_or("no root key has been replicated yet")?;
        let key = self.key(state, &active.key_id)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plain = serde_json::to_vec(items).map_err(|e| e.to_string())?;
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad(ns, path),
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        Ok(StoredVariable {
            namespace: ns.to_string(),
            path: path.to_string(),
            key_id: active.key_id.clone(),
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(sealed),
            ..Default::default()
        })
    }

    /// Open a stored variable's items.
    pub fn open_items(
        &self,
        state: &StateStore,
        v: &StoredVariable,
    ) -> Result<BTreeMap<String, String>, String> {
        let key = self.key(state, &v.key_id)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        let nonce = B64
            .decode(&v.nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or("its nonce is malformed")?;
        let sealed = B64.decode(&v.ciphertext).map_err(|e| e.to_string())?;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad(&v.namespace, &v.path),
                },
            )
            .map_err(|_| format!("it does not open with root key {:?}", v.key_id))?;
        serde_json::from_slice(&plain).map_err(|e| e.to_string())
    }

    /// The variable as the API shows it, items opened.
    pub fn decrypt(&self, state: &StateStore, v: &StoredVariable) -> Result<api::Variable, String> {
        let items = self.open_items(state, v).map_err(|e| {
            format!(
                "cannot decrypt variable {:?} in namespace {:?}: {e}",
                v.path, v.namespace
            )
        })?;
        Ok(api::Variable {
            namespace: v.namespace.clone(),
            path: v.path.clone(),
            create_index: v.create_index,
            modify_index: v.modify_index,
            create_time: v.create_time,
            modify_time: v.modify_time,
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{apply, Command, Effects};

    #[test]
    fn sealed_items_open_on_another_server_that_learnt_the_key_from_the_state() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Keyring::open(a.path()).unwrap();
        let follower = Keyring::open(b.path()).unwrap();
        let mut s = StateStore::default();
        let key = leader.key_to_replicate(&s, 1).unwrap();
        apply(
            &mut s,
            1,
            Command::UpsertRootKey { key },
            &mut Effects::default(),
        );
        assert!(leader.key_to_replicate(&s, 2).is_none());
        let items: BTreeMap<_, _> = [("password".to_string(), "hunter2".to_string())].into();
        let v = leader.seal(&s, "default", "a/b", &items).unwrap();
        assert!(!v.ciphertext.contains("hunter2"));
        let again = leader.seal(&s, "default", "a/b", &items).unwrap();
        assert_ne!(v.nonce, again.nonce, "a fresh nonce per write");
        assert_eq!(follower.open_items(&s, &v).unwrap(), items);
        // The follower saved the key it learnt, owner-only.
        let file = b.path().join("keyring").join(format!("{}.key", v.key_id));
        let mode = std::fs::metadata(&file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Sealed items moved to another path do not open.
        let mut moved = v.clone();
        moved.path = "c/d".into();
        assert!(follower.open_items(&s, &moved).is_err());
    }

    #[test]
    fn a_damaged_key_file_is_refused_with_its_name() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("keyring")).unwrap();
        std::fs::write(d.path().join("keyring/x.key"), "not a key").unwrap();
        let e = Keyring::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("x.key") && e.contains("32-byte key"), "{e}");
    }
}
