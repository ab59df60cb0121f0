//! Memory and process limits per project with cgroups, whichever kind the machine offers:
//! cgroup v2 (memory.max, pids.max, cgroup.kill), or v1 controllers (memory, pids) as on
//! hybrid hosts and in containers. Without either, only rlimits apply (logged at start).
//!
//! A command joins its project's groups before anything else runs: the sandbox is started
//! through `sh -c 'echo $$ > <group>/cgroup.procs ... exec ...'`, so no process of it ever runs
//! outside the limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use uuid::Uuid;

/// What this machine supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupSupport {
    /// A delegated cgroup v2 directory with memory and pids enabled for its children.
    V2 { base: PathBuf },
    /// v1 memory and pids hierarchies (our own group in each as the base).
    V1 { memory: PathBuf, pids: PathBuf },
    /// Neither could be set up.
    None { why: String },
}

impl CgroupSupport {
    /// Probes /proc/self/cgroup and the mounts, and creates `<our group>/codeflux` bases.
    pub fn detect() -> CgroupSupport {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut v1_memory = None;
        let mut v1_pids = None;
        let mut v2 = None;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("/"),
            );
            let rel = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "memory") {
                v1_memory = Some(Path::new("/sys/fs/cgroup/memory").join(rel));
            } else if controllers.split(',').any(|c| c == "pids") {
                v1_pids = Some(Path::new("/sys/fs/cgroup/pids").join(rel));
            } else if controllers.is_empty() {
                v2 = Some(rel.to_owned());
            }
        }
        if let (Some(m), Some(p)) = (v1_memory, v1_pids)
            && m.join("cgroup.procs").exists()
            && p.join("cgroup.procs").exists()
        {
            let (m, p) = (m.join("codeflux"), p.join("codeflux"));
            match (std::fs::create_dir_all(&m), std::fs::create_dir_all(&p)) {
                (Ok(()), Ok(())) => return CgroupSupport::V1 { memory: m, pids: p },
                (a, b) => {
                    return CgroupSupport::None {
                        why: format!("cgroup v1 not writable: {a:?} {b:?}"),
                    };
                }
            }
        }
        if let Some(rel) = v2 {
            let root = Path::new("/sys/fs/cgroup");
            if root.join("cgroup.controllers").exists() {
                let base = root.join(rel).join("codeflux");
                let ok = std::fs::create_dir_all(&base).is_ok()
                    && std::fs::write(base.join("cgroup.subtree_control"), "+memory +pids").is_ok();
                if ok {
                    return CgroupSupport::V2 { base };
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
}

/// One project's groups.
#[derive(Clone, Debug)]
pub struct ProjectCgroup {
    /// The `cgroup.procs` files a process writes itself into.
    pub procs: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl ProjectCgroup {
    /// Creates (or reuses) the project's groups with the limits.
    pub fn create(
        support: &CgroupSupport,
        project: Uuid,
        memory_bytes: u64,
        max_pids: u32,
    ) -> Result<Option<ProjectCgroup>, String> {
        let name = project.to_string();
        let write = |p: PathBuf, v: String| {
            std::fs::write(&p, v).map_err(|e| format!("{}: {e}", p.display()))
        };
        match support {
            CgroupSupport::None { .. } => Ok(None),
            CgroupSupport::V2 { base } => {
                let dir = base.join(&name);
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                write(dir.join("memory.max"), memory_bytes.to_string())?;
                let _ = write(dir.join("memory.swap.max"), "0".into());
                write(dir.join("pids.max"), max_pids.to_string())?;
                Ok(Some(ProjectCgroup {
                    procs: vec![dir.join("cgroup.procs")],
                    dirs: vec![dir],
                    v2: true,
                }))
            }
            CgroupSupport::V1 { memory, pids } => {
                let (m, p) = (memory.join(&name), pids.join(&name));
                std::fs::create_dir_all(&m).map_err(|e| e.to_string())?;
                std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                write(m.join("memory.limit_in_bytes"), memory_bytes.to_string())?;
                // Where swap accounting exists, forbid swapping past the limit too.
                let _ = write(
                    m.join("memory.memsw.limit_in_bytes"),
                    memory_bytes.to_string(),
                );
                write(p.join("pids.max"), max_pids.to_string())?;
                Ok(Some(ProjectCgroup {
                    procs: vec![m.join("cgroup.procs"), p.join("cgroup.procs")],
                    dirs: vec![m, p],
                    v2: false,
                }))
            }
        }
    }

    /// The shell prefix that moves the sandbox's first process into the groups.
    pub fn join_script(&self) -> String {
        let mut s = String::new();
        for p in &self.procs {
            s.push_str(&format!("echo $$ > '{}' && ", p.display()));
        }
        s.push_str("exec \"$@\"");
        s
    }

    /// Kills every process in the groups and removes them.
    pub async fn kill_and_remove(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.kill_and_remove_blocking()).await;
    }

    /// The processes in the project's group.
    pub fn pids(&self) -> Vec<i32> {
        self.procs
            .first()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|l| l.lines().filter_map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default()
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

    /// Kills every process in the groups and removes them, blocking (also used from Drop).
    pub fn kill_and_remove_blocking(&self) {
        for _ in 0..50 {
            if self.v2
                && let Some(d) = self.dirs.first()
            {
                let _ = std::fs::write(d.join("cgroup.kill"), "1");
            }
            let mut any = false;
            for procs in &self.procs {
                let list = std::fs::read_to_string(procs).unwrap_or_default();
                for pid in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    any = true;
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            if !any {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Memory in use now, in bytes (for figures).
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
}
