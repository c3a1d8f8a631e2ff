//! The words of the policy language: coarse dispositions (`policy = "read"`) and the
//! fine-grained capabilities each rule accepts, with the expansion of one into the other.

use std::collections::BTreeSet;
use std::fmt;

/// Declares a capability enum with its policy-language spelling, `ALL`, `as_str` and `parse`.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The spelling used in policies and in Nomad's API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The value spelt `text`, if any (case-sensitive, as Nomad's policies are).
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// Every spelling, for "expected one of" messages.
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|c| c.as_str()).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words! {
    /// A coarse `policy = "..."` value. Which ones a rule accepts depends on the rule.
    Disposition {
        Deny = "deny",
        List = "list",
        Read = "read",
        Write = "write",
        Scale = "scale",
    }
}

words! {
    /// A fine-grained capability inside a `namespace` rule.
    NamespaceCapability {
        Deny = "deny",
        ListJobs = "list-jobs",
        ParseJob = "parse-job",
        ReadJob = "read-job",
        SubmitJob = "submit-job",
        DispatchJob = "dispatch-job",
        ReadLogs = "read-logs",
        ReadFs = "read-fs",
        AllocExec = "alloc-exec",
        AllocNodeExec = "alloc-node-exec",
        AllocLifecycle = "alloc-lifecycle",
        SentinelOverride = "sentinel-override",
        CsiRegisterPlugin = "csi-register-plugin",
        CsiWriteVolume = "csi-write-volume",
        CsiReadVolume = "csi-read-volume",
        CsiListVolume = "csi-list-volume",
        CsiMountVolume = "csi-mount-volume",
        HostVolumeCreate = "host-volume-create",
        HostVolumeRegister = "host-volume-register",
        HostVolumeRead = "host-volume-read",
        HostVolumeWrite = "host-volume-write",
        HostVolumeDelete = "host-volume-delete",
        ListScalingPolicies = "list-scaling-policies",
        ReadScalingPolicy = "read-scaling-policy",
        ReadJobScaling = "read-job-scaling",
        ScaleJob = "scale-job",
        SubmitRecommendation = "submit-recommendation",
    }
}

words! {
    /// A capability inside a `host_volume` rule.
    HostVolumeCapability {
        Deny = "deny",
        MountReadonly = "mount-readonly",
        MountReadwrite = "mount-readwrite",
    }
}

words! {
    /// A capability inside a `node_pool` rule.
    NodePoolCapability {
        Deny = "deny",
        Read = "read",
        Write = "write",
        Delete = "delete",
    }
}

words! {
    /// A capability on a `variables { path "..." { ... } }` rule.
    VariableCapability {
        Deny = "deny",
        List = "list",
        Read = "read",
        Write = "write",
        Destroy = "destroy",
    }
}

/// The dispositions a rule accepts in its `policy` attribute.
pub fn dispositions_of(rule: &str) -> &'static [Disposition] {
    use Disposition::*;
    match rule {
        "namespace" => &[Deny, Read, Write, Scale],
        "plugin" => &[Deny, List, Read],
        _ => &[Deny, Read, Write],
    }
}

/// What `policy = "<d>"` grants inside a namespace, as Nomad documents it.
pub fn expand_namespace_policy(d: Disposition) -> BTreeSet<NamespaceCapability> {
    use NamespaceCapability::*;
    const READ: &[NamespaceCapability] = &[
        ListJobs,
        ParseJob,
        ReadJob,
        CsiListVolume,
        CsiReadVolume,
        ReadJobScaling,
        ListScalingPolicies,
        ReadScalingPolicy,
        HostVolumeRead,
    ];
    const WRITE_EXTRA: &[NamespaceCapability] = &[
        ScaleJob,
        SubmitJob,
        DispatchJob,
        ReadLogs,
        ReadFs,
        AllocExec,
        AllocLifecycle,
        CsiMountVolume,
        CsiWriteVolume,
        SubmitRecommendation,
        HostVolumeCreate,
    ];
    match d {
        Disposition::Deny => [Deny].into(),
        Disposition::Read => READ.iter().copied().collect(),
        Disposition::Write => READ.iter().chain(WRITE_EXTRA).copied().collect(),
        Disposition::Scale => [
            ListScalingPolicies,
            ReadScalingPolicy,
            ReadJobScaling,
            ScaleJob,
        ]
        .into(),
        Disposition::List => BTreeSet::new(),
    }
}

/// Capabilities that imply others: `host-volume-write` lets a token do everything with
/// dynamic host volumes.
pub fn imply_namespace_capabilities(caps: &mut BTreeSet<NamespaceCapability>) {
    use NamespaceCapability::*;
    if caps.contains(&HostVolumeWrite) {
        caps.extend([
            HostVolumeCreate,
            HostVolumeRegister,
            HostVolumeRead,
            HostVolumeDelete,
        ]);
    }
}

/// What `policy = "<d>"` grants on a host volume.
pub fn expand_host_volume_policy(d: Disposition) -> BTreeSet<HostVolumeCapability> {
    use HostVolumeCapability::*;
    match d {
        Disposition::Deny => [Deny].into(),
        Disposition::Read => [MountReadonly].into(),
        Disposition::Write => [MountReadonly, MountReadwrite].into(),
        Disposition::List | Disposition::Scale => BTreeSet::new(),
    }
}

/// What `policy = "<d>"` grants on a node pool.
pub fn expand_node_pool_policy(d: Disposition) -> BTreeSet<NodePoolCapability> {
    use NodePoolCapability::*;
    match d {
        Disposition::Deny => [Deny].into(),
        Disposition::Read => [Read].into(),
        Disposition::Write => [Read, Write, Delete].into(),
        Disposition::List | Disposition::Scale => BTreeSet::new(),
    }
}

/// Variable capabilities as Nomad stores them: `deny` alone replaces all others, and
/// `read` brings `list` with it.
pub fn expand_variable_capabilities(
    caps: impl IntoIterator<Item = VariableCapability>,
) -> BTreeSet<VariableCapability> {
    let mut out: BTreeSet<VariableCapability> = caps.into_iter().collect();
    if out.contains(&VariableCapability::Deny) {
        return [VariableCapability::Deny].into();
    }
    if out.contains(&VariableCapability::Read) {
        out.insert(VariableCapability::List);
    }
    out
}

/// Merges two dispositions of a singleton rule (`node`, `agent`, ...) across policies:
/// `deny` anywhere wins, otherwise the larger grant.
pub fn max_privilege(a: Option<Disposition>, b: Option<Disposition>) -> Option<Disposition> {
    use Disposition::*;
    let rank = |d: Option<Disposition>| match d {
        Some(Deny) => 4,
        Some(Write) => 3,
        Some(Read) => 2,
        Some(List) | Some(Scale) => 1,
        None => 0,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NamespaceCapability as N;

    #[test]
    fn read_expands_to_nomads_read_capabilities() {
        let read = expand_namespace_policy(Disposition::Read);
        for c in [
            N::ListJobs,
            N::ParseJob,
            N::ReadJob,
            N::CsiListVolume,
            N::CsiReadVolume,
            N::ListScalingPolicies,
            N::ReadScalingPolicy,
            N::ReadJobScaling,
        ] {
            assert!(read.contains(&c), "read lacks {c}");
        }
        for c in [N::SubmitJob, N::ReadLogs, N::AllocExec, N::ScaleJob] {
            assert!(!read.contains(&c), "read grants {c}");
        }
    }

    #[test]
    fn write_is_read_plus_the_write_capabilities() {
        let read = expand_namespace_policy(Disposition::Read);
        let write = expand_namespace_policy(Disposition::Write);
        assert!(write.is_superset(&read));
        for c in [
            N::SubmitJob,
            N::DispatchJob,
            N::ReadLogs,
            N::ReadFs,
            N::AllocExec,
            N::AllocLifecycle,
            N::CsiMountVolume,
            N::CsiWriteVolume,
            N::ScaleJob,
            N::SubmitRecommendation,
        ] {
            assert!(write.contains(&c), "write lacks {c}");
        }
        // Exec on drivers without isolation and Sentinel overrides are never implied.
        assert!(!write.contains(&N::AllocNodeExec));
        assert!(!write.contains(&N::SentinelOverride));
        assert!(!write.contains(&N::Deny));
    }

    #[test]
    fn scale_grants_exactly_the_scaling_capabilities() {
        let scale = expand_namespace_policy(Disposition::Scale);
        let want: BTreeSet<_> = [
            N::ListScalingPolicies,
            N::ReadScalingPolicy,
            N::ReadJobScaling,
            N::ScaleJob,
        ]
        .into();
        assert_eq!(scale, want);
        assert_eq!(expand_namespace_policy(Disposition::Deny), [N::Deny].into());
    }

    #[test]
    fn variable_deny_replaces_everything_and_read_implies_list() {
        use VariableCapability as V;
        assert_eq!(
            expand_variable_capabilities([V::Write, V::Deny]),
            [V::Deny].into()
        );
        assert_eq!(
            expand_variable_capabilities([V::Read]),
            [V::List, V::Read].into()
        );
        assert_eq!(expand_variable_capabilities([V::Write]), [V::Write].into());
    }

    #[test]
    fn deny_beats_any_grant_when_merging() {
        use Disposition::*;
        assert_eq!(max_privilege(Some(Write), Some(Deny)), Some(Deny));
        assert_eq!(max_privilege(Some(Read), Some(Write)), Some(Write));
        assert_eq!(max_privilege(None, Some(List)), Some(List));
        assert_eq!(max_privilege(Some(List), Some(Read)), Some(Read));
    }

    #[test]
    fn every_word_round_trips() {
        for c in NamespaceCapability::ALL {
            assert_eq!(NamespaceCapability::parse(c.as_str()), Some(*c));
        }
        assert_eq!(NamespaceCapability::parse("Read-Job"), None);
    }
}
