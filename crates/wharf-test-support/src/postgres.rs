//! A real PostgreSQL server for tests, in a temporary directory.
//!
//! [`Postgres::start`] runs `initdb` (no fsync) and `postgres` on a free
//! 127.0.0.1 port, listening on that address only, with its unix socket in
//! the temporary directory, `fsync`/`synchronous_commit`/`full_page_writes`
//! off; it is ready when `postmaster.pid` says so (polled against a
//! deadline, never a fixed sleep). The superuser [`SUPERUSER`] logs in
//! with [`PASSWORD`] over TCP (SCRAM), as an application would. Dropping
//! it stops the server by its PID (fast shutdown, then SIGKILL of its
//! process group if it lingers) and removes the directory.
//!
//! PostgreSQL refuses to run as root, and tests run as root here and in
//! CI: then the directory is given to the `postgres` system user and
//! `initdb`/`postgres` run as that user through `setpriv` (which execs, so
//! the PID is the server's). `setpriv --pdeathsig` also stops the server if
//! the test process dies without dropping it (a test killed on timeout),
//! so call [`Postgres::start`] on the thread that owns the value (the
//! test's own thread, as `#[tokio::test]` bodies run).
//!
//! The binaries are found through `WHARF_POSTGRES_BIN` (a directory), else
//! the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package,
//! which `scripts/setup-test-env` installs), else `PATH`.
//!
//! Each start costs about a second (initdb): tests start one server per
//! test function and cover many cases with it.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use crate::tools::find_in_path;

/// The superuser the server is initialised with.
pub const SUPERUSER: &str = "wharf";
/// Its password (SCRAM over TCP).
pub const PASSWORD: &str = "wharf-test-pg-password";

/// How long a start or a stop may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(20);

/// A running (or stopped, see [`Postgres::stop`]) PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `Some((uid, gid))` when running as root: the server's user.
    run_as: Option<(u32, u32)>,
    port: u16,
    child: Option<Child>,
    paused: bool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn find_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("WHARF_POSTGRES_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("postgres").is_file(),
            "WHARF_POSTGRES_BIN={} has no postgres binary",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Some(initdb) = find_in_path("initdb")
        && let Some(dir) = initdb.parent()
        && dir.join("postgres").is_file()
    {
        return dir.to_path_buf();
    }
    panic!(
        "PostgreSQL not found (/usr/lib/postgresql/*/bin, PATH or WHARF_POSTGRES_BIN): run \
         scripts/setup-test-env to install it"
    );
}

/// The uid and gid of a system user, by `id`.
fn user_ids(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run id: {e}"));
        assert!(
            out.status.success(),
            "there is no {name:?} user to run PostgreSQL as (tests run as root, which \
             PostgreSQL refuses): run scripts/setup-test-env to install the postgresql package"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id {flag} {name}: {e}"))
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl Postgres {
    /// Initialises and starts a server; panics (with the server's log) if
    /// it does not come up within a minute.
    pub fn start() -> Postgres {
        let bin = find_bin();
        let run_as = rustix::process::geteuid()
            .is_root()
            .then(|| user_ids("postgres"));
        let dir = tempfile::Builder::new()
            .prefix("wharf-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap_or_else(|e| {
                panic!("cannot give {} to postgres: {e}", dir.path().display())
            });
        }
        let mut server = Postgres {
            dir,
            bin,
            run_as,
            port: 0,
            child: None,
            paused: false,
        };
        server.initdb();
        // A port found free may be taken before the server binds it: try
        // a few.
        for attempt in 1..=5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(log) if attempt < 5 && log.contains("could not bind") => continue,
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt panics or returns");
    }

    /// A command that runs `program` as the server's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match (self.run_as, find_in_path("setpriv")) {
            (Some((uid, gid)), Some(setpriv)) => {
                let mut command = Command::new(setpriv);
                command.args([
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".to_owned(),
                    "--pdeathsig=INT".to_owned(),
                ]);
                command.arg(path);
                command
            }
            (Some(_), None) => panic!(
                "tests run as root and PostgreSQL refuses root: setpriv (util-linux) is needed \
                 to run it as the postgres user"
            ),
            (None, Some(setpriv)) => {
                let mut command = Command::new(setpriv);
                command.arg("--pdeathsig=INT").arg(path);
                command
            }
            (None, None) => Command::new(path),
        };
        command.current_dir(self.dir.path()).env_remove("PGDATA");
        command
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn initdb(&self) {
        let pwfile = self.dir.path().join("pwfile");
        let mut file = fs::File::create(&pwfile)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", pwfile.display()));
        writeln!(file, "{PASSWORD}").unwrap_or_else(|e| panic!("cannot write the pwfile: {e}"));
        drop(file);
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("cannot chown the pwfile: {e}"));
        }
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "--username",
                SUPERUSER,
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "--no-sync",
                "--no-instructions",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `postgres` on `self.port`; `Err(log)` if it does not come up.
    fn launch(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the server log: {e}"));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot open the server log: {e}"));
        let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=60",
                "-c",
                "logging_collector=off",
                "-c",
                "log_min_messages=warning",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group, for the last-resort kill (backends
            // make groups of their own, and exit when the postmaster dies).
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.ready() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "postgres exited with {status}:\n{}",
                    self.log_since(log_start)
                ));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "postgres was not ready within {DEADLINE:?}:\n{}",
                    self.log_since(log_start)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether `postmaster.pid` names our server and says "ready".
    fn ready(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.data().join("postmaster.pid")) else {
            return false;
        };
        let lines: Vec<&str> = text.lines().collect();
        let ours = self
            .pid()
            .is_some_and(|pid| lines.first().is_some_and(|l| l.trim() == pid.to_string()));
        ours && lines.get(7).is_some_and(|status| status.trim() == "ready")
    }

    fn log_since(&self, offset: u64) -> String {
        let text = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// The postmaster's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data, the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `postgres://wharf:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The URL of the `postgres` database that initdb creates.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// Creates a database; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url_for(name)
    }

    /// Runs SQL (several statements allowed) with psql in `database`, as
    /// the superuser over TCP; returns its unaligned, tuples-only output.
    /// Panics with psql's error if any statement fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut child = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .unwrap_or_else(|e| panic!("cannot feed psql: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(
            out.status.success(),
            "psql failed ({}) on:\n{sql}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (fast shutdown: sessions are ended) and waits for
    /// it to exit; the data stays, for [`Postgres::restart`].
    pub fn stop(&mut self) {
        self.resume();
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::INT);
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => break,
            }
        }
        self.child = Some(child);
        self.kill();
    }

    /// Starts the stopped server again, on the same port with the same
    /// data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        if let Err(log) = self.launch() {
            panic!("PostgreSQL did not restart on port {}:\n{log}", self.port);
        }
    }

    /// Freezes the server and all its backends (SIGSTOP to each: every
    /// child of the postmaster is a process group of its own):
    /// connections stay open and nothing answers, like a hung server.
    /// [`Postgres::resume`] (or drop) thaws it.
    pub fn pause(&mut self) {
        let Some(postmaster) = self.group() else {
            return;
        };
        // The postmaster first, so that it starts no new child meanwhile.
        let _ = kill_process(postmaster, Signal::STOP);
        for child in children(postmaster) {
            let _ = kill_process(child, Signal::STOP);
        }
        self.paused = true;
    }

    pub fn resume(&mut self) {
        if !self.paused {
            return;
        }
        self.paused = false;
        if let Some(postmaster) = self.group() {
            for child in children(postmaster) {
                let _ = kill_process(child, Signal::CONT);
            }
            let _ = kill_process(postmaster, Signal::CONT);
        }
    }

    fn group(&self) -> Option<Pid> {
        self.pid()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw)
    }

    /// SIGKILL to the whole process group, then reap.
    fn kill(&mut self) {
        if let Some(group) = self.group() {
            let _ = kill_process_group(group, Signal::KILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The processes whose parent is `parent` (from /proc).
fn children(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent.as_raw_nonzero().get()).then(|| Pid::from_raw(pid))?
        })
        .collect()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
