//! Network isolation: one network namespace per project with only its own loopback, an egress
//! proxy that lets the package registry through and nothing else, and connections from the
//! server into a project's loopback (for the preview).
//!
//! The namespace is held by a tiny process (`unshare --net` + `sleep`); the server enters it
//! only from short-lived threads of its own (setns affects one thread), to open the proxy's
//! listening socket and the preview's upstream connections. Sockets keep the namespace they
//! were created in, so tokio then drives them from any thread.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::SandboxError;

/// The port the egress proxy listens on inside every project's namespace.
pub const PROXY_PORT: u16 = 3128;
const MAX_HEAD: usize = 8 * 1024;
const MAX_TUNNELS: usize = 64;
const TUNNEL_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A project's network namespace, alive while this value is (its holder process is killed
/// when it is dropped).
pub struct NetNs {
    holder: Child,
    handle: NetNsHandle,
    pid: u32,
}

/// A way into a namespace: opens sockets inside it (cheap to clone).
#[derive(Clone)]
pub struct NetNsHandle {
    fd: Arc<OwnedFd>,
}

impl NetNs {
    /// A new namespace with `lo` up and nothing else.
    pub async fn create() -> Result<NetNs, SandboxError> {
        // setpriv --pdeathsig: the holder dies with the server even when it is killed outright.
        let mut holder = Command::new("/usr/bin/setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "--",
                "/usr/bin/unshare",
                "--net",
                "--",
                "/bin/sh",
                "-c",
                "ip link set lo up && echo ready && exec sleep infinity",
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own process group (see MountNs::create).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SandboxError::Setup(format!("creating a network namespace: {e}")))?;
        let pid = holder
            .id()
            .ok_or_else(|| SandboxError::Setup("the namespace holder exited at once".into()))?;
        let mut out = holder
            .stdout
            .take()
            .ok_or_else(|| SandboxError::Setup("no stdout from the namespace holder".into()))?;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
            .await
            .map_err(|_| {
                SandboxError::Setup("the network namespace did not come up in 10 s".into())
            })?
            .map_err(|e| SandboxError::Setup(format!("network namespace: {e}")))?;
        if !buf[..n].starts_with(b"ready") {
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut err)).await;
            }
            return Err(SandboxError::Setup(format!(
                "the network namespace could not be set up (needs root, `unshare` and `ip`): {}",
                err.trim()
            )));
        }
        let file = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| SandboxError::Setup(format!("opening the network namespace: {e}")))?;
        Ok(NetNs {
            holder,
            handle: NetNsHandle {
                fd: Arc::new(OwnedFd::from(file)),
            },
            pid,
        })
    }

    /// The namespace's path, for `nsenter --net=`.
    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    /// Whether the holder still runs (the namespace is gone with it).
    pub fn alive(&mut self) -> bool {
        matches!(self.holder.try_wait(), Ok(None))
    }

    /// A handle that opens sockets inside the namespace.
    pub fn handle(&self) -> NetNsHandle {
        self.handle.clone()
    }

    /// A connection to `127.0.0.1:port` inside the namespace.
    pub async fn connect(&self, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
        self.handle.connect(port, timeout).await
    }

    /// A listening socket on `127.0.0.1:port` inside the namespace.
    pub async fn listen(&self, port: u16) -> std::io::Result<TcpListener> {
        self.handle.listen(port).await
    }
}

impl NetNsHandle {
    /// Runs `f` on a thread of its own that has entered the namespace.
    async fn inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let fd = self.fd.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("codeflux-netns".into())
            .spawn(move || {
                let r = rustix::thread::move_into_link_name_space(
                    fd.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(std::io::Error::from)
                .and_then(|()| f());
                let _ = tx.send(r);
            })?;
        rx.await
            .map_err(|_| std::io::Error::other("the namespace thread died"))?
    }

    /// A connection to `127.0.0.1:port` inside the namespace.
    pub async fn connect(&self, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
        let std = self
            .inside(move || {
                let s = std::net::TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    timeout,
                )?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await?;
        TcpStream::from_std(std)
    }

    /// A listening socket on `127.0.0.1:port` inside the namespace.
    pub async fn listen(&self, port: u16) -> std::io::Result<TcpListener> {
        let std = self
            .inside(move || {
                let l = std::net::TcpListener::bind(("127.0.0.1", port))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .await?;
        TcpListener::from_std(std)
    }
}

/// What the egress proxy lets through.
#[derive(Clone, Debug)]
pub struct EgressPolicy {
    /// Host names (lowercase) that may be reached on port 443: the package registry.
    pub allowed_hosts: Vec<String>,
    /// Addresses never connected to: the host's own.
    pub own_addresses: HashSet<IpAddr>,
}

impl EgressPolicy {
    /// The registry hosts plus this machine's addresses (read from /proc).
    pub fn for_hosts(hosts: Vec<String>) -> Self {
        EgressPolicy {
            allowed_hosts: hosts
                .into_iter()
                .map(|h| h.trim().trim_end_matches('.').to_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            own_addresses: own_addresses(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h == host)
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let special = match ip {
            IpAddr::V4(v4) => {
                v4.is_loopback()
                    || v4.is_unspecified()
                    || v4.is_multicast()
                    || v4.is_link_local()
                    || v4.is_broadcast()
            }
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        !special && !self.own_addresses.contains(&ip)
    }
}

/// This machine's own addresses, from /proc (IPv4 local routes, IPv6 interface addresses).
fn own_addresses() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in trie.lines() {
            let t = line.trim();
            if let Some(addr) = t.strip_prefix("|-- ") {
                last = addr.parse().ok();
            } else if t.contains("/32 host LOCAL")
                && let Some(a) = last
            {
                out.insert(a);
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in v6.lines() {
            if let Some(hex) = line.split_whitespace().next()
                && hex.len() == 32
                && let Ok(n) = u128::from_str_radix(hex, 16)
            {
                out.insert(IpAddr::V6(std::net::Ipv6Addr::from(n)));
            }
        }
    }
    out
}

/// Serves the egress proxy for one project until the listener is dropped (task aborted).
pub async fn serve_proxy(listener: TcpListener, policy: Arc<EgressPolicy>, project: Uuid) {
    let tunnels = Arc::new(Semaphore::new(MAX_TUNNELS));
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = tunnels.clone().try_acquire_owned() else {
            let mut conn = conn;
            let _ = conn
                .write_all(b"HTTP/1.1 429 Too Many Tunnels\r\ncontent-length: 0\r\n\r\n")
                .await;
            continue;
        };
        let policy = policy.clone();
        tokio::spawn(async move {
            tunnel(conn, &policy, project).await;
            drop(permit);
        });
    }
}

async fn refuse(conn: &mut TcpStream, status: &str, why: &str) {
    let body = format!("CodeFlux sandbox: {why}\n");
    let _ = conn
        .write_all(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
}

async fn tunnel(mut conn: TcpStream, policy: &EgressPolicy, project: Uuid) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_HEAD {
                return Err(std::io::Error::other("bad request head"));
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        refuse(&mut conn, "400 Bad Request", "malformed proxy request").await;
        return;
    }
    let text = String::from_utf8_lossy(&head);
    let first = text.lines().next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != "CONNECT" {
        tracing::info!(%project, method, target, verdict = "refused", "egress");
        refuse(
            &mut conn,
            "403 Forbidden",
            "only HTTPS to the package registry is allowed",
        )
        .await;
        return;
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_matches(['[', ']'])
                .trim_end_matches('.')
                .to_lowercase(),
            p.parse::<u16>().unwrap_or(0),
        ),
        None => (String::new(), 0),
    };
    if port != 443 || !policy.host_allowed(&host) {
        tracing::info!(%project, host, port, verdict = "refused", "egress");
        refuse(
            &mut conn,
            "403 Forbidden",
            "this host is not reachable from the sandbox (only the package registry is)",
        )
        .await;
        return;
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 443)).await {
        Ok(a) => a.filter(|a| policy.address_allowed(a.ip())).collect(),
        Err(_) => Vec::new(),
    };
    let Some(addr) = addrs.first().copied() else {
        tracing::info!(%project, host, verdict = "refused-address", "egress");
        refuse(
            &mut conn,
            "403 Forbidden",
            "the registry resolved to an address the sandbox may not reach",
        )
        .await;
        return;
    };
    let upstream = tokio::time::timeout(Duration::from_secs(15), TcpStream::connect(addr)).await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        _ => {
            refuse(
                &mut conn,
                "502 Bad Gateway",
                "the registry could not be reached",
            )
            .await;
            return;
        }
    };
    tracing::debug!(%project, host, %addr, verdict = "allowed", "egress");
    if conn
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::time::timeout(
        TUNNEL_MAX_LIFETIME,
        tokio::io::copy_bidirectional(&mut conn, &mut upstream),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_the_host_and_special_ranges_are_refused() {
        let mut p = EgressPolicy::for_hosts(vec!["Registry.NPMjs.org.".into()]);
        p.own_addresses
            .insert("192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert!(p.host_allowed("registry.npmjs.org"));
        assert!(!p.host_allowed("evil.example"));
        for bad in [
            "127.0.0.1",
            "0.0.0.0",
            "169.254.1.1",
            "192.0.2.2",
            "::1",
            "::ffff:127.0.0.1",
            "fe80::1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(!p.address_allowed(ip), "{bad}");
        }
        for good in ["203.0.113.80", "104.16.0.1", "10.1.2.3"] {
            let ip: IpAddr = good.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(p.address_allowed(ip), "{good}");
        }
    }
}
