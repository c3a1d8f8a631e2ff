//! Who the task runs as and what it may do: `no_new_privs`, the bounding set, the user
//! and groups, and the capability sets.

use super::*;

/// Who a task runs as and what it may do, for [`drop_privileges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Privileges {
    /// (uid, gid) to switch to; `None` keeps the caller's.
    pub ids: Option<(u32, u32)>,
    /// The capability set (bit N = capability N).
    pub caps: u64,
    /// The kernel's highest capability number.
    pub last_cap: u32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// In a child about to `execve` a task (or a command in it): sets `no_new_privs`, cuts
/// the bounding set down to `p.caps`, switches to the user and `groups`, and leaves
/// exactly `p.caps` permitted, effective and inheritable, and ambient for a non-root
/// user (which `execve` would otherwise clear). Raw system calls only: glibc's
/// `set*id` wrappers would try to apply the change to every thread it believes this
/// process has (the agent's threads, which do not exist here). Async-signal-safe.
pub(crate) unsafe fn drop_privileges(
    p: &Privileges,
    groups: &[libc::gid_t],
) -> Result<(), &'static CStr> {
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        return Err(c"setting no_new_privs");
    }
    let caps = p.caps & cap_mask(p.last_cap);
    for cap in 0..=p.last_cap.min(63) {
        if caps & (1 << cap) == 0
            && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
        {
            return Err(c"dropping capabilities from the bounding set");
        }
    }
    if let Some((uid, gid)) = p.ids {
        // Keep the permitted set across the switch away from uid 0; it is cut down
        // to `caps` right after.
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(c"keeping capabilities across the user switch");
        }
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
            return Err(c"setting the task's groups");
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err(c"setting the task's group id");
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err(c"setting the task's user id");
        }
    }
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| (caps >> shift) as u32;
    let data = [
        CapData {
            effective: half(0),
            permitted: half(0),
            inheritable: half(0),
        },
        CapData {
            effective: half(32),
            permitted: half(32),
            inheritable: half(32),
        },
    ];
    if libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) != 0 {
        return Err(c"setting the task's capabilities");
    }
    if libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        0,
        0,
    ) != 0
    {
        return Err(c"clearing the ambient capabilities");
    }
    if libc::geteuid() != 0 {
        for cap in 0..=p.last_cap.min(63) {
            if caps & (1 << cap) != 0
                && libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                ) != 0
            {
                return Err(c"raising the task's ambient capabilities");
            }
        }
    }
    Ok(())
}

/// Bits 0..=last_cap.
fn cap_mask(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}
