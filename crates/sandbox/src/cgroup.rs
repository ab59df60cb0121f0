//! Memory, process and CPU limits per project with cgroups, whichever kind the machine offers:
//! cgroup v2 (memory.max, pids.max, cpu.max, cgroup.kill), or v1 controllers (memory, pids,
//! cpu) as on hybrid hosts and in containers. Without memory and pids controllers only
//! rlimits apply (logged at start); without a cpu controller, no CPU quota (logged).
//!
//! Layout, in each hierarchy: `<our group>/codeflux/srv-<pid>-<start>/<project>-<n>/{dev,cmd}`.
//! - one directory per server process (`srv-...`): a server that was SIGKILLed leaves its
//!   directory behind, and the next server removes it (killing whatever is left in it);
//!   servers running side by side never touch each other's groups;
//! - one group per *runtime* (`<project>-<n>`, n counts up), so a stale runtime's clean-up can
//!   never remove a newer runtime of the same project;
//! - two leaves: `dev` (the dev server) and `cmd` (the agent's commands, installs). The project
//!   group holds the totals (memory, processes, CPU quota); `cmd` gets three quarters of the
//!   memory and processes, so a command that forks or allocates without end is stopped inside
//!   its leaf before the dev server is starved (commands also run with oom_score_adj 1000).
//!
//! A command joins its leaf before anything else runs: the sandbox is started through
//! `sh -c 'echo $$ > <leaf>/cgroup.procs ... exec ...'`, so no process of it ever runs outside.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What this machine supports (the `codeflux` base groups, created).
#[derive(Clone, Debug, PartialEq)]
pub enum CgroupSupport {
    /// A delegated cgroup v2 directory with memory and pids (and maybe cpu) for its children.
    V2 { base: PathBuf, cpu: bool },
    /// v1 memory and pids hierarchies, and cpu if mounted (our own group in each as the base).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
    /// Neither could be set up.
    None { why: String },
}

/// The limits of one project.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub memory_bytes: u64,
    pub max_pids: u32,
    /// CPUs' worth of time per period (1.0 = one core); 0 or less: no quota.
    pub cpus: f64,
}

/// Which leaf a process joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    Dev,
    Cmd,
}

impl Leaf {
    fn name(self) -> &'static str {
        match self {
            Leaf::Dev => "dev",
            Leaf::Cmd => "cmd",
        }
    }
}

/// One mounted hierarchy: `mountinfo` line -> (mount point, fstype, super options).
fn cgroup_mounts() -> Vec<(PathBuf, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fstype = post.next()?.to_owned();
            let _source = post.next()?;
            let opts = post.next().unwrap_or_default().to_owned();
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| (PathBuf::from(mount_point), fstype, opts))
        })
        .collect()
}

/// Our group in the v1 hierarchy of `controller`, if it is mounted.
fn v1_group(own: &str, mounts: &[(PathBuf, String, String)], controller: &str) -> Option<PathBuf> {
    let rel = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim_start_matches('/').to_owned())
    })?;
    let (mp, _, _) = mounts
        .iter()
        .find(|(_, t, opts)| t == "cgroup" && opts.split(',').any(|o| o == controller))?;
    let dir = mp.join(rel);
    dir.join("cgroup.procs").exists().then_some(dir)
}

impl CgroupSupport {
    /// Probes /proc/self/cgroup and the mounts, and creates `<our group>/codeflux` bases.
    pub fn detect() -> CgroupSupport {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = cgroup_mounts();
        let memory = v1_group(&own, &mounts, "memory");
        let pids = v1_group(&own, &mounts, "pids");
        if let (Some(m), Some(p)) = (memory, pids) {
            let (m, p) = (m.join("codeflux"), p.join("codeflux"));
            let cpu = v1_group(&own, &mounts, "cpu")
                .map(|c| c.join("codeflux"))
                .filter(|c| std::fs::create_dir_all(c).is_ok());
            return match (std::fs::create_dir_all(&m), std::fs::create_dir_all(&p)) {
                (Ok(()), Ok(())) => CgroupSupport::V1 {
                    memory: m,
                    pids: p,
                    cpu,
                },
                (a, b) => CgroupSupport::None {
                    why: format!("cgroup v1 not writable: {a:?} {b:?}"),
                },
            };
        }
        let v2_rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| p.trim_start_matches('/').to_owned());
        let v2_mount = mounts
            .iter()
            .find(|(_, t, _)| t == "cgroup2")
            .map(|(mp, _, _)| mp.clone());
        if let (Some(rel), Some(mp)) = (v2_rel, v2_mount) {
            let own_dir = mp.join(rel);
            let available =
                std::fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| available.split_whitespace().any(|x| x == c);
            if has("memory") && has("pids") {
                let base = own_dir.join("codeflux");
                let cpu = has("cpu");
                let wanted = if cpu {
                    "+memory +pids +cpu"
                } else {
                    "+memory +pids"
                };
                // Our own group holds the server: enabling controllers for children may need
                // a delegated subtree (systemd Delegate=yes); try, then check.
                let _ = std::fs::write(own_dir.join("cgroup.subtree_control"), wanted);
                let ok = std::fs::create_dir_all(&base).is_ok()
                    && std::fs::write(base.join("cgroup.subtree_control"), wanted).is_ok();
                if ok {
                    return CgroupSupport::V2 { base, cpu };
                }
                return CgroupSupport::None {
                    why: "cgroup v2 without a delegated, writable subtree for memory and pids"
                        .into(),
                };
            }
        }
        CgroupSupport::None {
            why: "no memory and pids cgroup controllers are available".into(),
        }
    }

    fn bases(&self) -> Vec<PathBuf> {
        match self {
            CgroupSupport::V2 { base, .. } => vec![base.clone()],
            CgroupSupport::V1 { memory, pids, cpu } => {
                let mut v = vec![memory.clone(), pids.clone()];
                v.extend(cpu.iter().cloned());
                v
            }
            CgroupSupport::None { .. } => Vec::new(),
        }
    }

    /// Whether CPU quotas can be set.
    pub fn has_cpu(&self) -> bool {
        match self {
            CgroupSupport::V2 { cpu, .. } => *cpu,
            CgroupSupport::V1 { cpu, .. } => cpu.is_some(),
            CgroupSupport::None { .. } => false,
        }
    }
}

/// The start time of a process (clock ticks since boot), from /proc.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// This server's groups: one directory per hierarchy, named after the process.
#[derive(Debug)]
pub struct CgroupRoot {
    support: CgroupSupport,
    instance: String,
}

impl CgroupRoot {
    /// Detects the machine's cgroups, removes what servers that are gone left behind, and
    /// creates this server's directory.
    pub fn new(support: CgroupSupport) -> CgroupRoot {
        let pid = std::process::id();
        let instance = format!("srv-{pid}-{}", start_time(pid).unwrap_or(0));
        let root = CgroupRoot { support, instance };
        root.clean_stale();
        let dirs: Vec<PathBuf> = root.instance_dirs();
        for d in &dirs {
            if let Err(e) = std::fs::create_dir_all(d) {
                tracing::warn!(dir = %d.display(), "creating the server's cgroup: {e}");
            }
        }
        if let CgroupSupport::V2 { cpu, .. } = &root.support
            && let Some(d) = dirs.first()
        {
            let wanted = if *cpu {
                "+memory +pids +cpu"
            } else {
                "+memory +pids"
            };
            if let Err(e) = std::fs::write(d.join("cgroup.subtree_control"), wanted) {
                tracing::warn!("enabling cgroup controllers: {e}");
            }
        }
        root
    }

    pub fn support(&self) -> &CgroupSupport {
        &self.support
    }

    fn instance_dirs(&self) -> Vec<PathBuf> {
        self.support
            .bases()
            .into_iter()
            .map(|b| b.join(&self.instance))
            .collect()
    }

    /// Removes the directories of servers that no longer run (and anything still in them),
    /// and empty groups of older layouts.
    fn clean_stale(&self) {
        for base in self.support.bases() {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                if !path.is_dir() {
                    continue;
                }
                match name.strip_prefix("srv-").and_then(|r| r.split_once('-')) {
                    Some((pid, start)) => {
                        let alive = pid
                            .parse::<u32>()
                            .ok()
                            .and_then(start_time)
                            .is_some_and(|s| s.to_string() == start);
                        if !alive {
                            tracing::info!(dir = %path.display(), "removing the cgroups of a server that is gone");
                            kill_tree(&path);
                            remove_tree(&path);
                        }
                    }
                    // Groups of an older layout: removed when empty (rmdir refuses otherwise).
                    None => remove_tree(&path),
                }
            }
        }
    }

    /// Creates the groups of one runtime with its limits (None without cgroup support).
    pub fn create_project(
        &self,
        name: &str,
        limits: Limits,
    ) -> Result<Option<ProjectCgroup>, String> {
        let write = |p: PathBuf, v: String| {
            std::fs::write(&p, v).map_err(|e| format!("{}: {e}", p.display()))
        };
        let cmd_memory = limits.memory_bytes / 4 * 3;
        let cmd_pids = (limits.max_pids / 4 * 3).max(1);
        let quota = (limits.cpus > 0.0).then(|| ((limits.cpus * 100_000.0) as u64).max(1_000));
        let mk = |dir: &Path| -> Result<(), String> {
            std::fs::create_dir_all(dir.join("dev"))
                .and_then(|()| std::fs::create_dir_all(dir.join("cmd")))
                .map_err(|e| format!("{}: {e}", dir.display()))
        };
        match &self.support {
            CgroupSupport::None { .. } => Ok(None),
            CgroupSupport::V2 { base, cpu } => {
                let dir = base.join(&self.instance).join(name);
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let cg = ProjectCgroup {
                    dirs: vec![dir.clone()],
                    v2: true,
                    removed: AtomicBool::new(false),
                };
                let controllers = if *cpu {
                    "+memory +pids +cpu"
                } else {
                    "+memory +pids"
                };
                write(dir.join("cgroup.subtree_control"), controllers.into())?;
                mk(&dir)?;
                write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                let _ = write(dir.join("memory.swap.max"), "0".into());
                write(dir.join("pids.max"), limits.max_pids.to_string())?;
                write(dir.join("cmd/memory.max"), cmd_memory.to_string())?;
                write(dir.join("cmd/pids.max"), cmd_pids.to_string())?;
                if *cpu && let Some(q) = quota {
                    write(dir.join("cpu.max"), format!("{q} 100000"))?;
                }
                Ok(Some(cg))
            }
            CgroupSupport::V1 { memory, pids, cpu } => {
                let m = memory.join(&self.instance).join(name);
                let p = pids.join(&self.instance).join(name);
                let c = cpu.as_ref().map(|c| c.join(&self.instance).join(name));
                let mut dirs = vec![m.clone(), p.clone()];
                dirs.extend(c.iter().cloned());
                // From here on, a failure removes what was made (Drop).
                let cg = ProjectCgroup {
                    dirs: dirs.clone(),
                    v2: false,
                    removed: AtomicBool::new(false),
                };
                for d in &dirs {
                    mk(d)?;
                }
                write(
                    m.join("memory.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                )?;
                // Where swap accounting exists, forbid swapping past the limit too.
                let _ = write(
                    m.join("memory.memsw.limit_in_bytes"),
                    limits.memory_bytes.to_string(),
                );
                write(m.join("cmd/memory.limit_in_bytes"), cmd_memory.to_string())?;
                let _ = write(
                    m.join("cmd/memory.memsw.limit_in_bytes"),
                    cmd_memory.to_string(),
                );
                write(p.join("pids.max"), limits.max_pids.to_string())?;
                write(p.join("cmd/pids.max"), cmd_pids.to_string())?;
                if let (Some(c), Some(q)) = (&c, quota) {
                    write(c.join("cpu.cfs_period_us"), "100000".into())?;
                    write(c.join("cpu.cfs_quota_us"), q.to_string())?;
                }
                Ok(Some(cg))
            }
        }
    }
}

/// One runtime's groups (a directory per hierarchy, each with `dev` and `cmd` leaves). Dropping
/// it kills whatever still runs in them and removes them.
#[derive(Debug)]
pub struct ProjectCgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
    removed: AtomicBool,
}

impl ProjectCgroup {
    /// The shell prefix that moves the sandbox's first process into a leaf.
    pub fn join_script(&self, leaf: Leaf) -> String {
        let mut s = String::new();
        for d in &self.dirs {
            let procs = d.join(leaf.name()).join("cgroup.procs");
            s.push_str(&format!("echo $$ > '{}' && ", procs.display()));
        }
        s
    }

    /// The processes in the project's groups (both leaves).
    pub fn pids(&self) -> Vec<i32> {
        let Some(d) = self.dirs.first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for leaf in ["dev", "cmd", ""] {
            let procs = d.join(leaf).join("cgroup.procs");
            if let Ok(list) = std::fs::read_to_string(procs) {
                out.extend(list.lines().filter_map(|x| x.trim().parse::<i32>().ok()));
            }
        }
        out
    }

    /// Resident memory of its processes (sum of VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .sum::<u64>()
            * 1024
    }

    /// Memory in use now (both leaves), in bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        let d = self.dirs.first()?;
        let file = if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        std::fs::read_to_string(d.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Kills every process in the groups and removes them (once; later calls do nothing).
    pub fn kill_and_remove_blocking(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.v2
            && let Some(d) = self.dirs.first()
        {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
        for d in &self.dirs {
            kill_tree(d);
        }
        for d in &self.dirs {
            remove_tree(d);
        }
    }
}

impl Drop for ProjectCgroup {
    fn drop(&mut self) {
        self.kill_and_remove_blocking();
    }
}

/// Kills every process in a group and its children until none is left (at most ~2 s).
fn kill_tree(dir: &Path) {
    for _ in 0..100 {
        let mut any = false;
        for procs in procs_files(dir) {
            let list = std::fs::read_to_string(&procs).unwrap_or_default();
            for pid in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                any = true;
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(dir = %dir.display(), "processes survived SIGKILL in a sandbox cgroup");
}

fn procs_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.join("cgroup.procs")];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(procs_files(&e.path()));
            }
        }
    }
    out
}

/// rmdir of a group and its children, deepest first (cgroupfs refuses non-empty groups).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
