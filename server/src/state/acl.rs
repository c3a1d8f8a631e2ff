//! The ACL tables: policies by name, tokens by accessor ID (with a secret index), roles
//! by ID, and the index of the last bootstrap (Nomad's reset index).
//!
//! Secrets are kept as given (UUIDs drawn by the leader), so the data dir and snapshot
//! files must be protected like the tokens themselves (as the keyring already requires).

use super::{StateStore, StateWriter};
use acl::{AclPolicy, AclRole, AclToken};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything ACL in the state, one field of [`StateStore`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "AclData", into = "AclData")]
pub struct AclTables {
    policies: OrdMap<String, Arc<AclPolicy>>,
    tokens: OrdMap<String, Arc<AclToken>>,
    /// Secret ID -> accessor ID.
    secrets: OrdMap<String, String>,
    roles: OrdMap<String, Arc<AclRole>>,
    /// The Raft index of the last bootstrap; 0 before the first.
    bootstrap_index: u64,
}

/// The serialised form: plain lists, the secret index rebuilt on load.
#[derive(Default, Serialize, Deserialize)]
struct AclData {
    #[serde(default)]
    policies: Vec<Arc<AclPolicy>>,
    #[serde(default)]
    tokens: Vec<Arc<AclToken>>,
    #[serde(default)]
    roles: Vec<Arc<AclRole>>,
    #[serde(default)]
    bootstrap_index: u64,
}

impl From<AclTables> for AclData {
    fn from(t: AclTables) -> Self {
        AclData {
            policies: t.policies.values().cloned().collect(),
            tokens: t.tokens.values().cloned().collect(),
            roles: t.roles.values().cloned().collect(),
            bootstrap_index: t.bootstrap_index,
        }
    }
}

impl From<AclData> for AclTables {
    fn from(d: AclData) -> Self {
        let mut t = AclTables {
            bootstrap_index: d.bootstrap_index,
            ..Default::default()
        };
        for p in d.policies {
            t.policies.insert(p.name.clone(), p);
        }
        for tok in d.tokens {
            t.secrets
                .insert(tok.secret_id.clone(), tok.accessor_id.clone());
            t.tokens.insert(tok.accessor_id.clone(), tok);
        }
        for r in d.roles {
            t.roles.insert(r.id.clone(), r);
        }
        t
    }
}

impl StateStore {
    pub fn acl_policies(&self) -> &OrdMap<String, Arc<AclPolicy>> {
        &self.acl.policies
    }

    pub fn acl_policy(&self, name: &str) -> Option<Arc<AclPolicy>> {
        self.acl.policies.get(name).cloned()
    }

    pub fn acl_tokens(&self) -> &OrdMap<String, Arc<AclToken>> {
        &self.acl.tokens
    }

    pub fn acl_token(&self, accessor: &str) -> Option<Arc<AclToken>> {
        self.acl.tokens.get(accessor).cloned()
    }

    pub fn acl_token_by_secret(&self, secret: &str) -> Option<Arc<AclToken>> {
        let accessor = self.acl.secrets.get(secret)?;
        self.acl.tokens.get(accessor).cloned()
    }

    pub fn acl_roles(&self) -> &OrdMap<String, Arc<AclRole>> {
        &self.acl.roles
    }

    pub fn acl_role(&self, id: &str) -> Option<Arc<AclRole>> {
        self.acl.roles.get(id).cloned()
    }

    pub fn acl_role_by_name(&self, name: &str) -> Option<Arc<AclRole>> {
        self.acl.roles.values().find(|r| r.name == name).cloned()
    }

    /// The Raft index of the last bootstrap (0: never bootstrapped).
    pub fn acl_bootstrap_index(&self) -> u64 {
        self.acl.bootstrap_index
    }
}

impl StateWriter<'_> {
    fn acl_written(&mut self) {
        self.state.tables.acl = self.index;
    }

    pub fn put_acl_policy(&mut self, mut p: AclPolicy) {
        p.create_index = self
            .state
            .acl
            .policies
            .get(&p.name)
            .map_or(self.index, |old| old.create_index);
        p.modify_index = self.index;
        self.state.acl.policies.insert(p.name.clone(), Arc::new(p));
        self.acl_written();
    }

    pub fn delete_acl_policy(&mut self, name: &str) -> bool {
        let gone = self.state.acl.policies.remove(name).is_some();
        if gone {
            self.acl_written();
        }
        gone
    }

    /// Write a token; its create index is kept from the stored one.
    pub fn put_acl_token(&mut self, mut t: AclToken) -> Arc<AclToken> {
        if let Some(old) = self.state.acl.tokens.get(&t.accessor_id).cloned() {
            t.create_index = old.create_index;
            self.state.acl.secrets.remove(&old.secret_id);
        } else {
            t.create_index = self.index;
        }
        t.modify_index = self.index;
        let t = Arc::new(t);
        self.state
            .acl
            .secrets
            .insert(t.secret_id.clone(), t.accessor_id.clone());
        self.state
            .acl
            .tokens
            .insert(t.accessor_id.clone(), t.clone());
        self.acl_written();
        t
    }

    pub fn delete_acl_token(&mut self, accessor: &str) -> bool {
        let Some(old) = self.state.acl.tokens.remove(accessor) else {
            return false;
        };
        self.state.acl.secrets.remove(&old.secret_id);
        self.acl_written();
        true
    }

    pub fn put_acl_role(&mut self, mut r: AclRole) -> Arc<AclRole> {
        r.create_index = self
            .state
            .acl
            .roles
            .get(&r.id)
            .map_or(self.index, |old| old.create_index);
        r.modify_index = self.index;
        let r = Arc::new(r);
        self.state.acl.roles.insert(r.id.clone(), r.clone());
        self.acl_written();
        r
    }

    pub fn delete_acl_role(&mut self, id: &str) -> bool {
        let gone = self.state.acl.roles.remove(id).is_some();
        if gone {
            self.acl_written();
        }
        gone
    }

    pub fn set_acl_bootstrap_index(&mut self) {
        self.state.acl.bootstrap_index = self.index;
        self.acl_written();
    }
}
