//! The exec driver's agent-level settings, and who a task may run as.

use super::NAME;
use crate::driver::caps::CapSet;
use crate::driver::isolate::User;
use crate::driver::DriverError;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The exec driver's agent-level configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// Host path -> path inside the task's root, bind-mounted read-only.
    pub chroot_env: Vec<(PathBuf, PathBuf)>,
    /// Who a task without `user` runs as (`plugin "exec" { config { default_user } }`).
    pub default_user: String,
    /// The capabilities a task may have (`plugin "exec" { config { allow_caps } }`).
    pub allow_caps: CapSet,
    /// Users no task may run as (Nomad's client option `user.denylist`); `root` here
    /// refuses uid 0 under any name.
    pub user_denylist: Vec<String>,
}

/// Nomad's default `user.denylist`.
pub const DEFAULT_USER_DENYLIST: &str = "root,Administrator";
/// Nomad's default `user.checked_drivers`.
const DEFAULT_CHECKED_DRIVERS: &str = "exec,qemu,java";

impl Default for ExecConfig {
    fn default() -> Self {
        let same = |p: &str| (PathBuf::from(p), PathBuf::from(p));
        ExecConfig {
            chroot_env: ["/bin", "/etc", "/lib", "/lib32", "/lib64", "/sbin", "/usr"]
                .into_iter()
                .map(same)
                .collect(),
            default_user: "nobody".into(),
            allow_caps: CapSet::nomad_defaults(),
            user_denylist: comma_list(DEFAULT_USER_DENYLIST),
        }
    }
}

fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl ExecConfig {
    /// The configuration from an agent file: `plugin "exec" { config { ... } }` (keys
    /// `default_user`, `allow_caps`) and the client's `options` (`user.denylist`,
    /// `user.checked_drivers`). Unknown keys and wrong types are errors that say so.
    pub fn from_agent_config(
        plugin: Option<&BTreeMap<String, serde_json::Value>>,
        client_options: &BTreeMap<String, String>,
    ) -> Result<ExecConfig, String> {
        let mut c = ExecConfig::default();
        for (k, v) in plugin.into_iter().flatten() {
            let what = format!("plugin \"exec\" config {k:?}");
            match k.as_str() {
                "default_user" => match v.as_str().map(str::trim) {
                    Some(u) if !u.is_empty() => c.default_user = u.to_string(),
                    _ => return Err(format!("{what} must be a user name, got {v}")),
                },
                "allow_caps" => {
                    let names: Vec<String> = match v {
                        serde_json::Value::Array(items) => items
                            .iter()
                            .map(|i| {
                                i.as_str().map(String::from).ok_or_else(|| {
                                    format!("{what} must be a list of capability names, got {v}")
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(format!(
                                "{what} must be a list of capability names, got {v}"
                            ))
                        }
                    };
                    c.allow_caps = CapSet::parse(&names, &what)?;
                }
                _ => {
                    return Err(format!(
                        "plugin \"exec\" config has an unknown setting {k:?}; the exec \
                         driver knows default_user and allow_caps"
                    ))
                }
            }
        }
        let checked = client_options
            .get("user.checked_drivers")
            .map(String::as_str)
            .unwrap_or(DEFAULT_CHECKED_DRIVERS);
        c.user_denylist = if comma_list(checked).iter().any(|d| d == NAME) {
            comma_list(
                client_options
                    .get("user.denylist")
                    .map(String::as_str)
                    .unwrap_or(DEFAULT_USER_DENYLIST),
            )
        } else {
            vec![]
        };
        Ok(c)
    }

    /// Refuses users on the denylist (and uid 0 under any name when `root` is on it).
    pub(super) fn check_user(
        &self,
        task: &str,
        name: &str,
        user: &User,
    ) -> Result<(), DriverError> {
        let denied = self.user_denylist.iter().any(|d| d == name)
            || (user.uid == 0 && self.user_denylist.iter().any(|d| d == "root"));
        if !denied {
            return Ok(());
        }
        Err(DriverError::Config(format!(
            "{NAME}: task {task:?} may not run as user {name:?} (uid {}): this agent refuses \
             the users {} for exec tasks (client option \"user.denylist\"); set the task's \
             user to an unprivileged one, or take {name:?} off the agent's user.denylist",
            user.uid,
            self.user_denylist.join(", ")
        )))
    }
}

/// Looks `name` up in the host's user database (the task's /etc is the host's).
pub(super) fn lookup_user(name: &str) -> Result<User, DriverError> {
    let u = nix::unistd::User::from_name(name)
        .map_err(|e| DriverError::Start(format!("looking up user {name:?}: {e}")))?
        .ok_or_else(|| DriverError::Config(format!("user {name:?} does not exist on this node")))?;
    let cname = std::ffi::CString::new(name)
        .map_err(|_| DriverError::Config(format!("invalid user name {name:?}")))?;
    let groups = nix::unistd::getgrouplist(&cname, u.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| vec![u.gid.as_raw()]);
    Ok(User {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> User {
        User {
            uid,
            gid: uid,
            groups: vec![uid],
        }
    }

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn root_is_refused_by_default_under_any_name() {
        let c = ExecConfig::default();
        assert_eq!(c.default_user, "nobody");
        let e = c.check_user("t", "root", &user(0)).unwrap_err();
        assert!(!e.recoverable());
        let msg = e.to_string();
        assert!(
            msg.starts_with("exec: task \"t\" may not run as user \"root\" (uid 0)")
                && msg.contains("user.denylist"),
            "{msg}"
        );
        // Another name for uid 0 is still root.
        assert!(c.check_user("t", "toor", &user(0)).is_err());
        assert!(c.check_user("t", "nobody", &user(65534)).is_ok());
        assert!(c.check_user("t", "Administrator", &user(1000)).is_err());
    }

    #[test]
    fn the_denylist_and_checked_drivers_come_from_the_client_options() {
        let c =
            ExecConfig::from_agent_config(None, &options(&[("user.denylist", "ubuntu")])).unwrap();
        assert!(c.check_user("t", "ubuntu", &user(1000)).is_err());
        assert!(c.check_user("t", "root", &user(0)).is_ok());
        let c = ExecConfig::from_agent_config(None, &options(&[("user.checked_drivers", "java")]))
            .unwrap();
        assert!(c.user_denylist.is_empty());
        assert!(c.check_user("t", "root", &user(0)).is_ok());
    }

    #[test]
    fn plugin_settings_are_typed_and_unknown_ones_refused() {
        let cfg = |v: serde_json::Value| {
            let m: BTreeMap<String, serde_json::Value> = serde_json::from_value(v).unwrap();
            ExecConfig::from_agent_config(Some(&m), &BTreeMap::new())
        };
        let c =
            cfg(serde_json::json!({ "default_user": "daemon", "allow_caps": ["all"] })).unwrap();
        assert_eq!(c.default_user, "daemon");
        assert_eq!(c.allow_caps, CapSet::all());
        let e = cfg(serde_json::json!({ "default_user": "" })).unwrap_err();
        assert!(e.contains("\"default_user\" must be a user name"), "{e}");
        let e = cfg(serde_json::json!({ "allow_caps": "chown" })).unwrap_err();
        assert!(e.contains("must be a list of capability names"), "{e}");
        let e = cfg(serde_json::json!({ "no_pivot": true })).unwrap_err();
        assert!(e.contains("unknown setting \"no_pivot\""), "{e}");
    }
}
