//! Host-side file operations on a project's workspace, safe against a hostile workspace.
//!
//! Everything in a workspace may have been planted by the agent's commands: symlinks to host
//! files, symlinked directories, FIFOs. Every path is therefore resolved by the kernel relative
//! to the workspace's directory fd with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`: `..` cannot climb out and no symlink is followed, for reads and
//! for writes. Only regular files are read (a FIFO is opened non-blocking and refused).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Directories never listed, snapshotted or shown: installed packages, build output, caches.
pub const SKIP_DIRS: &[&str] = &[
    "node_modules",
    ".git",
    ".next",
    ".vite",
    "dist",
    "build",
    "out",
    ".turbo",
    ".cache",
    ".home",
    ".npm",
    "coverage",
];

/// Largest file the tools read or snapshot.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest total snapshot.
pub const MAX_SNAPSHOT_BYTES: usize = 16 * 1024 * 1024;

/// Why a file operation was refused or failed; the message goes back to the model as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("invalid path \"{path}\": {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("\"{0}\" does not exist")]
    NotFound(String),
    #[error("\"{path}\" is not a regular file ({what}); only regular files can be read or written")]
    NotRegular { path: String, what: String },
    #[error(
        "\"{0}\" leaves the workspace (a symlink or ..); the file tools only follow plain paths inside it"
    )]
    Escapes(String),
    #[error("\"{path}\" is too large ({size} bytes; the limit is {limit})")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("\"{0}\" is not UTF-8 text")]
    Binary(String),
    #[error("\"{path}\": {reason}")]
    Io { path: String, reason: String },
}

/// Checks a path the model gave and returns it normalised ("./src//a.ts" -> "src/a.ts").
/// Absolute paths, `..`, NUL bytes and empty paths are refused.
pub fn clean_path(path: &str) -> Result<String, FileError> {
    let invalid = |reason: &str| FileError::InvalidPath {
        path: path.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let p = path.trim();
    if p.is_empty() {
        return Err(invalid("empty"));
    }
    if p.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if p.starts_with('/') || p.starts_with('~') {
        return Err(invalid(
            "absolute paths are not allowed; use a path relative to the project root, like src/App.tsx",
        ));
    }
    let mut parts = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("\"..\" is not allowed; stay inside the project")),
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(invalid("names no file"));
    }
    let joined = parts.join("/");
    if joined.len() > 1024 {
        return Err(invalid("longer than 1024 bytes"));
    }
    Ok(joined)
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn map_errno(path: &str, e: Errno) -> FileError {
    match e {
        Errno::NOENT => FileError::NotFound(path.to_owned()),
        Errno::XDEV | Errno::LOOP => FileError::Escapes(path.to_owned()),
        Errno::NOTDIR => FileError::Io {
            path: path.to_owned(),
            reason: "a parent of this path is a file, not a directory".to_owned(),
        },
        Errno::ISDIR => FileError::NotRegular {
            path: path.to_owned(),
            what: "a directory".to_owned(),
        },
        other => FileError::Io {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "not a regular file",
    }
}

/// A project's workspace directory on the host.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: OwnedFd,
    /// Owner given to files and directories created from the host (the project's uid).
    owner: Option<(u32, u32)>,
}

impl Workspace {
    /// Opens (and creates, if missing) the workspace directory. `root` itself is trusted: it is
    /// chosen by the server, never by the model.
    pub fn open(root: &Path, owner: Option<(u32, u32)>) -> Result<Workspace, FileError> {
        std::fs::create_dir_all(root).map_err(|e| FileError::Io {
            path: root.display().to_string(),
            reason: e.to_string(),
        })?;
        let dir = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )
        .map_err(|e| map_errno(&root.display().to_string(), e))?;
        Ok(Workspace {
            root: root.to_path_buf(),
            dir,
            owner,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open_beneath(&self, rel: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, FileError> {
        rustix::fs::openat2(
            &self.dir,
            rel,
            flags | OFlags::CLOEXEC | OFlags::NOCTTY,
            mode,
            RESOLVE,
        )
        .map_err(|e| map_errno(rel, e))
    }

    /// Reads a text file.
    pub fn read(&self, path: &str) -> Result<String, FileError> {
        let rel = clean_path(path)?;
        let fd = self.open_beneath(&rel, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let st = rustix::fs::fstat(&fd).map_err(|e| map_errno(&rel, e))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft != FileType::RegularFile {
            return Err(FileError::NotRegular {
                path: rel,
                what: type_name(ft).to_owned(),
            });
        }
        let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
        if size > MAX_FILE_BYTES {
            return Err(FileError::TooLarge {
                path: rel,
                size,
                limit: MAX_FILE_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        std::fs::File::from(fd)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::Io {
                path: rel.clone(),
                reason: e.to_string(),
            })?;
        String::from_utf8(bytes).map_err(|_| FileError::Binary(rel))
    }

    /// Opens (creating as needed) the parent directories of `rel`, never through a symlink.
    /// With `repair`, a component that is not a directory (a link, a file) is replaced by one.
    fn parent_dir(&self, rel: &str, repair: bool) -> Result<(OwnedFd, String), FileError> {
        let (parents, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        let mut dir = rustix::io::dup(&self.dir).map_err(|e| map_errno(rel, e))?;
        for part in parents.split('/').filter(|p| !p.is_empty()) {
            let open = |d: &OwnedFd| {
                rustix::fs::openat2(
                    d,
                    part,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                    RESOLVE,
                )
            };
            dir = match open(&dir) {
                Ok(d) => d,
                Err(Errno::LOOP | Errno::XDEV | Errno::NOTDIR) if repair => {
                    // A link or a file where the version has a directory: it goes.
                    rustix::fs::unlinkat(&dir, part, AtFlags::empty())
                        .map_err(|e| map_errno(rel, e))?;
                    self.make_dir(&dir, part, rel)?
                }
                Err(Errno::NOENT) => self.make_dir(&dir, part, rel)?,
                Err(e) => return Err(map_errno(rel, e)),
            };
        }
        Ok((dir, name.to_owned()))
    }

    fn make_dir(&self, parent: &OwnedFd, part: &str, rel: &str) -> Result<OwnedFd, FileError> {
        match rustix::fs::mkdirat(parent, part, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(map_errno(rel, e)),
        }
        let d = rustix::fs::openat2(
            parent,
            part,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| map_errno(rel, e))?;
        self.chown(&d, rel)?;
        Ok(d)
    }

    fn chown(&self, fd: &impl AsFd, rel: &str) -> Result<(), FileError> {
        if let Some((uid, gid)) = self.owner {
            // The ids are the project's uid/gid, chosen by the server.
            let (u, g) = (
                rustix::process::Uid::from_raw(uid),
                rustix::process::Gid::from_raw(gid),
            );
            rustix::fs::fchown(fd, Some(u), Some(g)).map_err(|e| map_errno(rel, e))?;
        }
        Ok(())
    }

    /// Writes a file (creating parent directories), atomically: a temporary file in the same
    /// directory is renamed over the target. A symlink at the target is replaced, never followed.
    pub fn write(&self, path: &str, content: &str) -> Result<(), FileError> {
        self.write_bytes(path, content.as_bytes())
    }

    /// [`Workspace::write`] for any bytes.
    pub fn write_bytes(&self, path: &str, content: &[u8]) -> Result<(), FileError> {
        self.write_inner(path, content, false)
    }

    /// Writes a file of a version being restored: whatever stands in its way (a link or a
    /// file where a directory belongs, a directory, FIFO or socket where the file belongs) is
    /// removed first, without following anything.
    pub fn restore_file(&self, path: &str, content: &[u8]) -> Result<(), FileError> {
        self.write_inner(path, content, true)
    }

    fn write_inner(&self, path: &str, content: &[u8], repair: bool) -> Result<(), FileError> {
        let rel = clean_path(path)?;
        let (dir, name) = self.parent_dir(&rel, repair)?;
        if let Ok(st) = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft != FileType::RegularFile && ft != FileType::Symlink {
                if !repair {
                    return Err(FileError::NotRegular {
                        path: rel,
                        what: type_name(ft).to_owned(),
                    });
                }
                let r = crate::fsutil::remove_tree_at(&dir, &name, 512);
                if r.left > 0 {
                    return Err(FileError::Io {
                        path: rel,
                        reason: format!(
                            "{} could not be removed to restore this file",
                            type_name(ft)
                        ),
                    });
                }
            }
        }
        let tmp = format!(".{name}.codeflux-{}.tmp", std::process::id());
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        let fd = rustix::fs::openat2(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
            RESOLVE,
        )
        .map_err(|e| map_errno(&rel, e))?;
        self.chown(&fd, &rel)?;
        let mut file = std::fs::File::from(fd);
        let written = file.write_all(content).and_then(|()| file.flush());
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            return Err(FileError::Io {
                path: rel,
                reason: e.to_string(),
            });
        }
        rustix::fs::renameat(&dir, tmp.as_str(), &dir, name.as_str()).map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
            map_errno(&rel, e)
        })
    }

    /// Deletes a file (not a directory). A missing file is not an error.
    pub fn delete(&self, path: &str) -> Result<(), FileError> {
        let rel = clean_path(path)?;
        let (parents, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p.to_owned(), n.to_owned()),
            None => (String::new(), rel.clone()),
        };
        let dir = if parents.is_empty() {
            rustix::io::dup(&self.dir).map_err(|e| map_errno(&rel, e))?
        } else {
            match self.open_beneath(&parents, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()) {
                Ok(d) => d,
                Err(FileError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        match rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(map_errno(&rel, e)),
        }
    }

    /// Every regular file outside [`SKIP_DIRS`], sorted. Symlinks are listed as nothing.
    pub fn list(&self) -> Result<Vec<String>, FileError> {
        Ok(self.list_with_others()?.0)
    }

    /// (regular files, other entries: links, FIFOs, sockets, devices), outside [`SKIP_DIRS`].
    fn list_with_others(&self) -> Result<(Vec<String>, Vec<String>), FileError> {
        let (mut out, mut others) = (Vec::new(), Vec::new());
        let dir = rustix::io::dup(&self.dir).map_err(|e| map_errno(".", e))?;
        self.walk(dir, String::new(), 0, &mut out, &mut others)?;
        out.sort();
        Ok((out, others))
    }

    fn walk(
        &self,
        dir: OwnedFd,
        prefix: String,
        depth: usize,
        out: &mut Vec<String>,
        others: &mut Vec<String>,
    ) -> Result<(), FileError> {
        if depth > 32 || out.len() > 20_000 {
            return Ok(());
        }
        let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| map_errno(&prefix, e))?;
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let name_bytes = entry.file_name().to_bytes();
            if name_bytes == b"." || name_bytes == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name_bytes) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let st = match rustix::fs::statat(
                &dir,
                OsStr::from_bytes(name_bytes),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(_) => continue,
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile if !name.contains(".codeflux-") => out.push(rel),
                FileType::Directory => {
                    if SKIP_DIRS.contains(&name) {
                        continue;
                    }
                    let Ok(sub) = rustix::fs::openat2(
                        &dir,
                        OsStr::from_bytes(name_bytes),
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                        RESOLVE,
                    ) else {
                        continue;
                    };
                    self.walk(sub, rel, depth + 1, out, others)?;
                }
                FileType::RegularFile => {}
                _ if SKIP_DIRS.contains(&name) => {}
                _ => others.push(rel),
            }
        }
        Ok(())
    }

    /// Every text source file (see [`Workspace::list`]) with its content; binary and
    /// oversized files are left out.
    pub fn snapshot(&self) -> Result<BTreeMap<String, String>, FileError> {
        let mut out = BTreeMap::new();
        let mut total = 0;
        for path in self.list()? {
            match self.read(&path) {
                Ok(content) => {
                    total += content.len();
                    if total > MAX_SNAPSHOT_BYTES {
                        tracing::warn!(workspace = %self.root.display(), "snapshot over {MAX_SNAPSHOT_BYTES} bytes; rest left out");
                        break;
                    }
                    out.insert(path, content);
                }
                Err(
                    FileError::Binary(_)
                    | FileError::TooLarge { .. }
                    | FileError::NotRegular { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Makes the workspace's source files exactly `files`: writes each, deletes listed files
    /// that are not in it, and every link, FIFO or socket (a version never has one). Skipped
    /// directories (node_modules, ...) are left alone.
    pub fn replace_sources(&self, files: &BTreeMap<String, String>) -> Result<(), FileError> {
        let (listed, others) = self.list_with_others()?;
        for path in listed.iter().chain(&others) {
            if !files.contains_key(path) || others.contains(path) {
                self.delete(path)?;
            }
        }
        for (path, content) in files {
            if self.read(path).ok().as_deref() != Some(content.as_str()) {
                self.restore_file(path, content.as_bytes())?;
            }
        }
        Ok(())
    }
}
