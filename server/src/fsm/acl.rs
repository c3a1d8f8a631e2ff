//! Commands about ACLs: the bootstrap (once, or again at the reset index), policies,
//! tokens and roles. The leader draws every accessor, secret, ID and timestamp before it
//! proposes; what depends on the state (the bootstrap check, role name uniqueness) is
//! decided here, on the state the entry applies to.

use super::Response;
use crate::state::StateWriter;
use acl::{AclPolicy, AclRole, AclToken};
use serde::{Deserialize, Serialize};

/// One ACL change (`Command::Acl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AclCommand {
    /// Store the first management token; refused once bootstrapped unless
    /// `reset_index` is the index of the last bootstrap.
    Bootstrap {
        token: AclToken,
        reset_index: u64,
    },
    UpsertPolicies {
        policies: Vec<AclPolicy>,
    },
    DeletePolicies {
        names: Vec<String>,
    },
    UpsertTokens {
        tokens: Vec<AclToken>,
    },
    DeleteTokens {
        accessors: Vec<String>,
    },
    UpsertRoles {
        roles: Vec<AclRole>,
    },
    DeleteRoles {
        ids: Vec<String>,
    },
}

/// How a refused second bootstrap's error starts.
pub const BOOTSTRAP_DONE: &str = "ACL bootstrap already done";

pub(super) fn apply(w: &mut StateWriter, cmd: AclCommand, resp: &mut Response) {
    match cmd {
        AclCommand::Bootstrap { token, reset_index } => {
            let done = w.acl_bootstrap_index();
            if done != 0 && done != reset_index {
                resp.error = Some(format!("{BOOTSTRAP_DONE} (reset index: {done})"));
                return;
            }
            w.put_acl_token(token);
            w.set_acl_bootstrap_index();
        }
        AclCommand::UpsertPolicies { policies } => {
            for p in policies {
                w.put_acl_policy(p);
            }
        }
        AclCommand::DeletePolicies { names } => {
            if let Some(missing) = names.iter().find(|n| w.acl_policy(n).is_none()) {
                resp.error = Some(format!("ACL policy {missing:?} not found"));
                return;
            }
            for n in names {
                w.delete_acl_policy(&n);
            }
        }
        AclCommand::UpsertTokens { tokens } => {
            for t in tokens {
                w.put_acl_token(t);
            }
        }
        AclCommand::DeleteTokens { accessors } => {
            if let Some(missing) = accessors.iter().find(|a| w.acl_token(a).is_none()) {
                resp.error = Some(format!("ACL token {missing:?} not found"));
                return;
            }
            for a in accessors {
                w.delete_acl_token(&a);
            }
        }
        AclCommand::UpsertRoles { roles } => {
            for r in &roles {
                if let Some(other) = w.acl_role_by_name(&r.name).filter(|o| o.id != r.id) {
                    resp.error = Some(format!(
                        "ACL role with name {:?} already exists (ID {})",
                        r.name, other.id
                    ));
                    return;
                }
            }
            for r in roles {
                w.put_acl_role(r);
            }
        }
        AclCommand::DeleteRoles { ids } => {
            if let Some(missing) = ids.iter().find(|id| w.acl_role(id).is_none()) {
                resp.error = Some(format!("ACL role {missing:?} not found"));
                return;
            }
            for id in ids {
                w.delete_acl_role(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{apply as fsm_apply, Command, Effects};
    use crate::state::StateStore;

    fn token(secret: &str) -> AclToken {
        AclToken {
            accessor_id: format!("acc-{secret}"),
            secret_id: secret.into(),
            kind: acl::TokenType::Management,
            ..Default::default()
        }
    }

    fn run(s: &mut StateStore, index: u64, cmd: AclCommand) -> Response {
        fsm_apply(s, index, Command::Acl(cmd), &mut Effects::default())
    }

    #[test]
    fn bootstrap_happens_once_unless_the_reset_index_matches() {
        let mut s = StateStore::default();
        let first = run(
            &mut s,
            3,
            AclCommand::Bootstrap {
                token: token("a"),
                reset_index: 0,
            },
        );
        assert_eq!(first.error, None);
        assert_eq!(s.acl_bootstrap_index(), 3);
        let again = run(
            &mut s,
            4,
            AclCommand::Bootstrap {
                token: token("b"),
                reset_index: 0,
            },
        );
        assert_eq!(
            again.error.as_deref(),
            Some("ACL bootstrap already done (reset index: 3)")
        );
        assert!(s.acl_token_by_secret("b").is_none());
        let reset = run(
            &mut s,
            5,
            AclCommand::Bootstrap {
                token: token("c"),
                reset_index: 3,
            },
        );
        assert_eq!(reset.error, None);
        assert_eq!(s.acl_bootstrap_index(), 5);
        assert!(s.acl_token_by_secret("c").is_some());
    }

    #[test]
    fn acl_tables_survive_a_snapshot_round_trip() {
        let mut s = StateStore::default();
        run(
            &mut s,
            2,
            AclCommand::UpsertTokens {
                tokens: vec![token("x")],
            },
        );
        let text = serde_json::to_string(&s).unwrap();
        let back: StateStore = serde_json::from_str(&text).unwrap();
        assert_eq!(back.acl_token_by_secret("x").unwrap().accessor_id, "acc-x");
        assert_eq!(back.tables().acl, 2);
    }

    #[test]
    fn role_names_are_unique() {
        let mut s = StateStore::default();
        let role = |id: &str| AclRole {
            id: id.into(),
            name: "ops".into(),
            ..Default::default()
        };
        assert_eq!(
            run(
                &mut s,
                2,
                AclCommand::UpsertRoles {
                    roles: vec![role("r1")]
                }
            )
            .error,
            None
        );
        let dup = run(
            &mut s,
            3,
            AclCommand::UpsertRoles {
                roles: vec![role("r2")],
            },
        );
        assert!(dup.error.unwrap().contains("already exists"));
    }
}
