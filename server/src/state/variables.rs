//! The variables table (Nomad Variables, items encrypted) and the root keys they are
//! encrypted with: keys, reads and writes.
//!
//! The state never holds a variable's plaintext: its items arrive encrypted by the
//! leader (`crate::keyring`), with the ID of the root key that can open them. Root keys
//! are replicated here so every server (and a follower restored from a snapshot) can
//! decrypt what any leader wrote.

use super::{StateStore, StateWriter};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `(namespace, path)`.
pub type VariableKey = (String, String);

/// A variable as stored: its metadata and its items, encrypted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredVariable {
    pub namespace: String,
    pub path: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
    /// The root key the items were sealed with.
    pub key_id: String,
    /// Base64 of the AEAD nonce (random per write) and of the sealed JSON items.
    pub nonce: String,
    pub ciphertext: String,
}

impl StoredVariable {
    pub fn key(&self) -> VariableKey {
        (self.namespace.clone(), self.path.clone())
    }

    /// The metadata the API lists.
    pub fn metadata(&self) -> api::VariableMetadata {
        api::VariableMetadata {
            namespace: self.namespace.clone(),
            path: self.path.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }
}

/// A root key, replicated so that every server can open every variable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootKey {
    pub key_id: String,
    /// Base64 of the 32-byte AES-256-GCM key.
    pub key: String,
    pub create_time: i64,
    pub create_index: u64,
}

impl StateStore {
    /// Every variable, ordered by namespace and path.
    pub fn variable_table(&self) -> &OrdMap<VariableKey, Arc<StoredVariable>> {
        &self.variables
    }

    pub fn variable(&self, ns: &str, path: &str) -> Option<Arc<StoredVariable>> {
        self.variables
            .get(&(ns.to_string(), path.to_string()))
            .cloned()
    }

    /// Every replicated root key, by ID.
    pub fn root_keys(&self) -> &OrdMap<String, Arc<RootKey>> {
        &self.root_keys
    }

    /// The key new variables are sealed with: the first one replicated.
    pub fn active_root_key(&self) -> Option<Arc<RootKey>> {
        self.root_keys
            .values()
            .min_by_key(|k| (k.create_index, k.key_id.clone()))
            .cloned()
    }
}

impl StateWriter<'_> {
    /// Write a variable; its create index (kept from the stored one) and modify index are
    /// set here. Returns the stored copy.
    pub fn put_variable(&mut self, mut v: StoredVariable) -> Arc<StoredVariable> {
        let key = v.key();
        match self.state.variables.get(&key) {
            Some(old) => {
                v.create_index = old.create_index;
                v.create_time = old.create_time;
            }
            None => v.create_index = self.index,
        }
        v.modify_index = self.index;
        let v = Arc::new(v);
        self.state.variables.insert(key, v.clone());
        self.state.tables.variables = self.index;
        v
    }

    /// Delete a variable; false when there was none.
    pub fn delete_variable(&mut self, ns: &str, path: &str) -> bool {
        let gone = self
            .state
            .variables
            .remove(&(ns.to_string(), path.to_string()))
            .is_some();
        if gone {
            self.state.tables.variables = self.index;
        }
        gone
    }

    /// Keep a root key; a key already kept under its ID is left as it is.
    pub fn put_root_key(&mut self, mut k: RootKey) -> bool {
        if self.state.root_keys.contains_key(&k.key_id) {
            return false;
        }
        k.create_index = self.index;
        self.state.root_keys.insert(k.key_id.clone(), Arc::new(k));
        true
    }
}
