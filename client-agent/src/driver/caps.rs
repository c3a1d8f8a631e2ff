//! Linux capabilities for isolated tasks: names, sets, and the set a task gets.
//!
//! A task's set is computed as Nomad's exec driver does: Nomad's default set, minus the
//! task's `cap_drop`, plus its `cap_add`, where everything added must be in the agent's
//! `allow_caps` (and the result never leaves `allow_caps`, so an agent that narrows it
//! narrows every task). The set becomes the task's bounding, permitted, effective and
//! inheritable sets (and its ambient set for a non-root user, so that a task running as
//! `nobody` holds exactly these capabilities too); see [`super::isolate`].

use std::fmt;

/// Capability names in kernel bit order (`CAP_CHOWN` is bit 0), without the `CAP_` prefix.
const NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Nomad's default capability set for the exec driver (and the default `allow_caps`).
pub const NOMAD_DEFAULTS: &[&str] = &[
    "audit_write",
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "mknod",
    "net_bind_service",
    "setfcap",
    "setgid",
    "setpcap",
    "setuid",
    "sys_chroot",
];

/// A set of capabilities, one bit per capability as the kernel numbers them.
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    /// Every capability this code knows by name.
    pub fn all() -> CapSet {
        CapSet((1u64 << NAMES.len()) - 1)
    }

    /// Nomad's default set.
    pub fn nomad_defaults() -> CapSet {
        let mut s = CapSet::EMPTY;
        for n in NOMAD_DEFAULTS {
            if let Some(i) = index_of(n) {
                s.0 |= 1 << i;
            }
        }
        s
    }

    pub fn from_bits(bits: u64) -> CapSet {
        CapSet(bits & CapSet::all().0)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    /// Parses names as Nomad's configuration spells them: `"chown"`, `"CAP_CHOWN"` or
    /// `"all"`, in any case. `what` names the setting in the error.
    pub fn parse<S: AsRef<str>>(names: &[S], what: &str) -> Result<CapSet, String> {
        let mut s = CapSet::EMPTY;
        for raw in names {
            let raw = raw.as_ref().trim();
            let lower = raw.to_ascii_lowercase();
            if lower == "all" {
                s = s.union(CapSet::all());
                continue;
            }
            let name = lower.strip_prefix("cap_").unwrap_or(&lower);
            match index_of(name) {
                Some(i) => s.0 |= 1 << i,
                None => {
                    return Err(format!(
                        "{what}: {raw:?} is not a Linux capability (known: {}, or \"all\")",
                        NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(s)
    }

    pub fn contains(self, bit: u32) -> bool {
        bit < 64 && self.0 & (1 << bit) != 0
    }

    pub fn union(self, o: CapSet) -> CapSet {
        CapSet(self.0 | o.0)
    }

    pub fn intersect(self, o: CapSet) -> CapSet {
        CapSet(self.0 & o.0)
    }

    pub fn minus(self, o: CapSet) -> CapSet {
        CapSet(self.0 & !o.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lowercase names, in kernel order.
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet[{}]", self.names().join(","))
    }
}

impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

fn index_of(name: &str) -> Option<usize> {
    NAMES.iter().position(|n| *n == name)
}

/// The set a task gets: Nomad's defaults minus `cap_drop` plus `cap_add`, within `allow`.
/// Asking to add what the agent does not allow is an error that names the capabilities.
pub fn task_set(allow: CapSet, cap_add: &[String], cap_drop: &[String]) -> Result<CapSet, String> {
    let add = CapSet::parse(cap_add, "cap_add")?;
    let drop = CapSet::parse(cap_drop, "cap_drop")?;
    let refused = add.minus(allow);
    if !refused.is_empty() {
        return Err(format!(
            "cap_add asks for capabilities this agent does not allow: {refused}; the exec \
             plugin's allow_caps permits only: {allow}"
        ));
    }
    Ok(CapSet::nomad_defaults()
        .minus(drop)
        .union(add)
        .intersect(allow))
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn kernel_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_follow_the_kernels_bit_numbers() {
        // From linux/capability.h.
        assert_eq!(index_of("chown"), Some(0));
        assert_eq!(index_of("net_bind_service"), Some(10));
        assert_eq!(index_of("sys_chroot"), Some(18));
        assert_eq!(index_of("sys_admin"), Some(21));
        assert_eq!(index_of("mknod"), Some(27));
        assert_eq!(index_of("audit_write"), Some(29));
        assert_eq!(index_of("setfcap"), Some(31));
        assert_eq!(index_of("checkpoint_restore"), Some(40));
    }

    #[test]
    fn nomads_default_set_is_thirteen_capabilities_without_sys_admin() {
        let d = CapSet::nomad_defaults();
        assert_eq!(d.names().len(), 13);
        // The bits /proc/<pid>/status shows as CapEff for it.
        assert_eq!(d.bits(), 0x00000000a80405fb);
        assert!(!d.contains(21));
    }

    #[test]
    fn names_parse_in_nomads_spellings_and_unknown_ones_are_refused() {
        let s = CapSet::parse(&["CAP_NET_RAW", "sys_time", "Kill"], "t").unwrap();
        assert_eq!(s.names(), vec!["kill", "net_raw", "sys_time"]);
        assert_eq!(CapSet::parse(&["ALL"], "t").unwrap(), CapSet::all());
        let e = CapSet::parse(&["net_rwa"], "allow_caps").unwrap_err();
        assert!(
            e.starts_with("allow_caps: \"net_rwa\" is not a Linux capability"),
            "{e}"
        );
    }

    #[test]
    fn a_task_gets_the_defaults_changed_by_cap_add_and_cap_drop_within_allow_caps() {
        let defaults = CapSet::nomad_defaults();
        assert_eq!(task_set(defaults, &[], &[]).unwrap(), defaults);
        let s = task_set(defaults, &[], &v(&["all"])).unwrap();
        assert!(s.is_empty());
        let s = task_set(defaults, &v(&["net_bind_service"]), &v(&["all"])).unwrap();
        assert_eq!(s.names(), vec!["net_bind_service"]);
        let s = task_set(defaults, &[], &v(&["mknod", "CAP_SETUID"])).unwrap();
        assert!(!s.contains(27) && !s.contains(7) && s.contains(0));
        let wider = defaults.union(CapSet::parse(&["net_raw"], "t").unwrap());
        let s = task_set(wider, &v(&["net_raw"]), &[]).unwrap();
        assert!(s.contains(13));
    }

    #[test]
    fn adding_what_the_agent_does_not_allow_is_refused_by_name() {
        let e = task_set(CapSet::nomad_defaults(), &v(&["sys_admin", "net_raw"]), &[]).unwrap_err();
        assert!(e.contains("net_raw, sys_admin"), "{e}");
        let e = task_set(CapSet::nomad_defaults(), &v(&["all"]), &[]).unwrap_err();
        assert!(e.contains("sys_admin"), "{e}");
    }

    #[test]
    fn an_agent_that_narrows_allow_caps_narrows_the_default_set() {
        let allow = CapSet::parse(&["chown", "kill"], "t").unwrap();
        assert_eq!(task_set(allow, &[], &[]).unwrap(), allow);
    }
}
