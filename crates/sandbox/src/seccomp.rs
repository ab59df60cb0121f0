//! The seccomp policy of every sandboxed process, compiled with `seccompiler` and handed to
//! bubblewrap (`--add-seccomp-fd`), which installs it right before it runs the command.
//!
//! Default allow; refused with EPERM: new namespaces (`unshare`/`clone` with any CLONE_NEW*
//! flag, `setns`), every mount call (old and new API), `pivot_root`/`chroot`, keyrings,
//! `bpf`, `perf_event_open`, `ptrace` and cross-process memory access, module and kexec
//! loading, `reboot`, swap, accounting, quotas, the kernel log, clock setting,
//! `open_by_handle_at`, `userfaultfd`, and on x86-64 `iopl`/`ioperm` and obsolete calls.
//! Answered ENOSYS (so that libc falls back instead of failing): `clone3` (its flags cannot be
//! inspected; glibc then uses `clone`, whose flags are) and io_uring (libuv falls back to its
//! thread pool). Two programs because one seccompiler filter has one match action.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::SandboxError;

/// Every CLONE_NEW* flag (user, mount, net, pid, ipc, uts, cgroup, time).
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME (not in every libc)
];

fn arch() -> Result<TargetArch, SandboxError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(TargetArch::x86_64),
        "aarch64" => Ok(TargetArch::aarch64),
        other => Err(SandboxError::Setup(format!(
            "no seccomp policy for the {other} architecture"
        ))),
    }
}

/// Syscalls refused outright with EPERM.
fn denied() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_userfaultfd,
        libc::SYS_vhangup,
        libc::SYS_lookup_dcookie,
        libc::SYS_fanotify_init,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_nfsservctl,
        libc::SYS__sysctl,
        libc::SYS_sysfs,
        libc::SYS_ustat,
    ]);
    v
}

/// Syscalls answered ENOSYS (callers fall back to something the policy can inspect).
fn unsupported() -> Vec<i64> {
    vec![
        libc::SYS_clone3,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
}

fn rule_flag_set(arg: u8, flag: u64) -> Result<SeccompRule, SandboxError> {
    let cond = SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(flag),
        flag,
    )
    .map_err(|e| SandboxError::Setup(format!("seccomp condition: {e}")))?;
    SeccompRule::new(vec![cond]).map_err(|e| SandboxError::Setup(format!("seccomp rule: {e}")))
}

/// The two compiled programs: (EPERM policy, ENOSYS policy).
pub fn programs() -> Result<(BpfProgram, BpfProgram), SandboxError> {
    let arch = arch()?;
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied() {
        eperm.insert(nr, Vec::new());
    }
    // unshare(flags) and clone(flags, ...): flags are argument 0 on x86-64 and aarch64.
    let ns_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&f| rule_flag_set(0, f))
        .collect::<Result<Vec<_>, _>>()?;
    eperm.insert(libc::SYS_unshare, ns_rules.clone());
    eperm.insert(libc::SYS_clone, ns_rules);
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in unsupported() {
        enosys.insert(nr, Vec::new());
    }
    let compile = |rules, errno: i32| -> Result<BpfProgram, SandboxError> {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| SandboxError::Setup(format!("seccomp filter: {e}")))?;
        BpfProgram::try_from(filter)
            .map_err(|e| SandboxError::Setup(format!("compiling the seccomp filter: {e}")))
    };
    Ok((compile(eperm, libc::EPERM)?, compile(enosys, libc::ENOSYS)?))
}

/// A program as the kernel (and bwrap) read it: `struct sock_filter` records, native endian.
pub fn to_bytes(prog: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for ins in prog {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// Writes both programs into `dir` (root-only files read by the sandbox's set-up shell) and
/// returns their paths.
pub fn write_programs(dir: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let (eperm, enosys) = programs()?;
    std::fs::create_dir_all(dir)
        .map_err(|e| SandboxError::Setup(format!("creating {}: {e}", dir.display())))?;
    let mut paths = Vec::new();
    for (name, prog) in [("seccomp-eperm.bpf", eperm), ("seccomp-enosys.bpf", enosys)] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, to_bytes(&prog))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| SandboxError::Setup(format!("writing {}: {e}", path.display())))?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_programs_compile() {
        let (a, b) = super::programs().unwrap_or_else(|e| panic!("{e}"));
        assert!(a.len() > 40 && b.len() > 4, "{} {}", a.len(), b.len());
        assert_eq!(super::to_bytes(&a).len(), a.len() * 8);
    }
}
