//! A real HAProxy in front of wharf for tests: `haproxy` from Debian's
//! package (`scripts/setup-test-env` installs it), run in the foreground
//! (`haproxy -db -f CFG`) with a configuration of its own in a temporary
//! directory: one TCP frontend per [`Route`], each forwarding to wharf with
//! a PROXY protocol header (`send-proxy-v2`, or `send-proxy` for v1): to
//! one server, or round-robin over several ([`Route::balance`]: several
//! wharf nodes behind one address).
//!
//! Frontends listen on 127.0.0.1: on a free port picked at start, or on a
//! range of ports given by the test (FTP passive ports: the server is then
//! named without a port, so HAProxy connects to the port the client
//! connected to). Readiness is polled on HAProxy's own stats socket (`show
//! info`, answered once every listener is bound), never on a frontend (a
//! probe there would reach wharf as a connection) and never slept on. The
//! process is stopped by its PID when the [`Haproxy`] is dropped.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long HAProxy may take to answer on its stats socket.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Which PROXY protocol header HAProxy sends to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `send-proxy` (text).
    V1,
    /// `send-proxy-v2` (binary).
    V2,
}

#[derive(Debug, Clone)]
enum Bind {
    /// A free port, picked at start.
    Free,
    /// `LOW-HIGH`, kept as the destination port.
    Range(String),
}

/// One frontend and where it forwards to.
#[derive(Debug, Clone)]
pub struct Route {
    bind: Bind,
    /// `IP:PORT` each, or `IP` alone with [`Bind::Range`]; several are
    /// balanced round-robin.
    servers: Vec<String>,
    header: Header,
    /// HAProxy health checks of the servers, as docs/deploy.md configures
    /// them: `check`, and on a port of their own with `check-send-proxy`.
    check: Check,
}

#[derive(Debug, Clone, Copy)]
enum Check {
    None,
    /// On the server's own port.
    Own,
    /// On this port (a passive range, checked on its node's control port).
    Port(u16),
}

impl Route {
    /// A frontend on a free 127.0.0.1 port that forwards to `server` with a
    /// v2 header.
    pub fn to(server: SocketAddr) -> Route {
        Route::balance(&[server])
    }

    /// A frontend on a free 127.0.0.1 port that forwards each new
    /// connection to the next of `servers` in turn (`balance roundrobin`:
    /// with HAProxy's single thread here, consecutive connections go to
    /// consecutive servers), with a v2 header.
    pub fn balance(servers: &[SocketAddr]) -> Route {
        assert!(!servers.is_empty(), "a route needs a server");
        Route {
            bind: Bind::Free,
            servers: servers.iter().map(SocketAddr::to_string).collect(),
            header: Header::V2,
            check: Check::None,
        }
    }

    /// A frontend on 127.0.0.1 ports `range` (`"LOW-HIGH"`, e.g. from
    /// [`crate::tools::free_port_range`]) that forwards each connection to
    /// the same port of `server`, with a v2 header: FTP passive ports.
    pub fn ports(range: &str, server: IpAddr) -> Route {
        Route {
            bind: Bind::Range(range.to_owned()),
            servers: vec![server.to_string()],
            header: Header::V2,
            check: Check::None,
        }
    }

    /// The same route with HAProxy health checks of its servers every
    /// 100 ms (on their own port; the PROXY header goes with the checks).
    pub fn checked(mut self) -> Route {
        self.check = Check::Own;
        self
    }

    /// The same route with health checks every 100 ms on `port` of its
    /// servers (`check port PORT check-send-proxy`: a passive range checked
    /// on its node's control port).
    pub fn checked_on(mut self, port: u16) -> Route {
        self.check = Check::Port(port);
        self
    }

    /// The same route with another header version.
    pub fn header(mut self, header: Header) -> Route {
        self.header = header;
        self
    }
}

/// A running HAProxy.
pub struct Haproxy {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Each route's frontend address (`None` for a range).
    frontends: Vec<Option<SocketAddr>>,
}

impl std::fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Haproxy")
            .field("frontends", &self.frontends)
            .field("pid", &self.pid())
            .finish()
    }
}

/// `count` distinct free loopback ports (all held while picked).
fn free_ports(count: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot find a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

fn config(dir: &Path, routes: &[Route], ports: &[Option<u16>]) -> String {
    let mut text = format!(
        "global\n    \
         stats socket {socket} mode 600 level admin\n    \
         nbthread 1\n    \
         maxconn 2000\n\
         defaults\n    \
         mode tcp\n    \
         timeout connect 5s\n    \
         timeout client 120s\n    \
         timeout server 120s\n",
        socket = dir.join("admin.sock").display()
    );
    for (i, (route, port)) in routes.iter().zip(ports).enumerate() {
        let bind = match (&route.bind, port) {
            (Bind::Range(range), _) => range.clone(),
            (Bind::Free, port) => port.map(|p| p.to_string()).unwrap_or_default(),
        };
        let send = match route.header {
            Header::V1 => "send-proxy",
            Header::V2 => "send-proxy-v2",
        };
        text.push_str(&format!(
            "frontend f{i}\n    bind 127.0.0.1:{bind}\n    default_backend b{i}\n\
             backend b{i}\n    balance roundrobin\n"
        ));
        let check = match route.check {
            Check::None => String::new(),
            Check::Own => " check inter 100ms".to_owned(),
            Check::Port(port) => format!(" check port {port} check-send-proxy inter 100ms"),
        };
        for (j, server) in route.servers.iter().enumerate() {
            text.push_str(&format!("    server s{i}_{j} {server} {send}{check}\n"));
        }
    }
    text
}

/// Whether HAProxy answers `show info` on its stats socket.
fn answers(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"show info\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("Name: HAProxy")
}

fn launch(dir: &Path, haproxy: &Path) -> Result<Child, String> {
    let log_path = dir.join("haproxy.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", haproxy.display()))?;
    let socket = dir.join("admin.sock");
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("haproxy exited with {status}: {log}"));
        }
        if answers(&socket) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!(
                "haproxy did not answer within {START_DEADLINE:?}: {log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Haproxy {
    /// Starts HAProxy with one frontend per route, and waits until it
    /// listens on all of them.
    pub fn start(routes: &[Route]) -> Haproxy {
        let haproxy = crate::tools::find_in_path("haproxy")
            .or_else(|| Some(Path::new("/usr/sbin/haproxy").to_path_buf()).filter(|p| p.is_file()))
            .unwrap_or_else(|| {
                panic!("haproxy not found: run scripts/setup-test-env to install it")
            });
        let dir = tempfile::Builder::new()
            .prefix("wharf-haproxy-")
            .tempdir()
            .expect("create a temporary directory");
        let mut last_error = String::new();
        // A port picked as free may be taken before HAProxy binds it: a few
        // tries with new ports.
        for _ in 0..5 {
            let free = routes
                .iter()
                .filter(|r| matches!(r.bind, Bind::Free))
                .count();
            let mut picked = free_ports(free).into_iter();
            let ports: Vec<Option<u16>> = routes
                .iter()
                .map(|r| match r.bind {
                    Bind::Free => picked.next(),
                    Bind::Range(_) => None,
                })
                .collect();
            std::fs::write(
                dir.path().join("haproxy.cfg"),
                config(dir.path(), routes, &ports),
            )
            .expect("write haproxy.cfg");
            match launch(dir.path(), &haproxy) {
                Ok(child) => {
                    return Haproxy {
                        child: Some(child),
                        dir,
                        frontends: ports
                            .iter()
                            .map(|p| p.map(|port| SocketAddr::from(([127, 0, 0, 1], port))))
                            .collect(),
                    };
                }
                Err(error) => last_error = error,
            }
        }
        panic!("haproxy did not start: {last_error}");
    }

    /// The frontend address of route `index` (a free-port route).
    pub fn frontend(&self, index: usize) -> SocketAddr {
        self.frontends
            .get(index)
            .copied()
            .flatten()
            .unwrap_or_else(|| panic!("route {index} has no single frontend port"))
    }

    /// The configuration it runs (for a test's report).
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.cfg")).unwrap_or_default()
    }

    /// What it logged (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// Each server's status by its health checks (`UP`, `DOWN`, `no check`,
    /// ...), from `show stat` on the stats socket.
    pub fn server_statuses(&self) -> Vec<String> {
        let Ok(mut stream) = UnixStream::connect(self.dir.path().join("admin.sock")) else {
            return Vec::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream.write_all(b"show stat\n").is_err() {
            return Vec::new();
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        // Columns: pxname, svname, ..., status (the 18th).
        answer
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split(',').collect();
                let name = fields.get(1)?;
                (*name != "FRONTEND" && *name != "BACKEND")
                    .then(|| fields.get(17).map(|s| s.to_string()))?
            })
            .collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
