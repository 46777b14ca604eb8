//! Runs the real `wharf` binary for end-to-end tests, and the real OpenSSH
//! clients against it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::tools::{require, workspace_root};

/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(60);

fn keys_dir() -> PathBuf {
    let dir = workspace_root().join("target/test-keys");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// An ed25519 key pair made by `ssh-keygen` once and reused: `(private key
/// path, public key line)`.
///
/// nextest runs every test in its own process, so several processes may ask
/// for the same key at once: each makes its pair in a directory of its own
/// and renames that directory into place, which succeeds for one of them;
/// the others remove theirs and use the winner's. A reader therefore never
/// sees half a key or a private key paired with another process's public key.
pub fn ssh_key(name: &str) -> (PathBuf, String) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let home = keys_dir().join(format!("{name}.d"));
    let private = home.join(name);
    let public = home.join(format!("{name}.pub"));
    if !public.exists() {
        let scratch = keys_dir().join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));
        let status = Command::new(require("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(scratch.join(name))
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
        assert!(status.success(), "ssh-keygen failed");
        if std::fs::rename(&scratch, &home).is_err() {
            // Another process won the race; its pair is complete.
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    let line = std::fs::read_to_string(&public)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", public.display()))
        .trim()
        .to_owned();
    (private, line)
}

/// The host key every test server uses (generating RSA keys per test would
/// be slow).
pub fn host_key() -> PathBuf {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| ssh_key("test_host_ed25519").0).clone()
}

/// A running `wharf serve`.
pub struct Wharf {
    pub binary: PathBuf,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub sftp: Option<SocketAddr>,
    pub ftps: Option<SocketAddr>,
    pub ftp: Option<SocketAddr>,
    stdout: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Wharf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wharf").field("sftp", &self.sftp).finish()
    }
}

/// A config with one filesystem store `default`, SFTP on a free port and the
/// shared test host key. `extra` is appended (more sections, or keys of
/// sections not written here).
pub fn basic_config(extra: &str) -> String {
    format!(
        r#"[server]
data_dir = "data"
host_keys = ["{host_key}"]

[protocols.sftp]
listen = "127.0.0.1:0"

[storage.default]
kind = "filesystem"
root = "files"

{extra}
"#,
        host_key = host_key().display()
    )
}

impl Wharf {
    /// A test directory with `wharf.toml` written, the server not started:
    /// for CLI tests, or to add users before `start`.
    pub fn prepare(binary: &Path, config: &str) -> Wharf {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::write(dir.path().join("wharf.toml"), config)
            .unwrap_or_else(|e| panic!("write config: {e}"));
        Wharf {
            binary: binary.to_owned(),
            stdout: dir.path().join("audit.log"),
            dir,
            child: None,
            sftp: None,
            ftps: None,
            ftp: None,
            stderr: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("wharf.toml")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Adds `keys` (TOML lines) to the `[server]` section of a prepared
    /// server's configuration.
    pub fn add_server_keys(&self, keys: &str) {
        let path = self.config_path();
        let config =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(config.contains("[server]\n"), "no [server] section");
        let config = config.replacen("[server]\n", &format!("[server]\n{keys}\n"), 1);
        std::fs::write(&path, config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Runs `wharf --config <dir>/wharf.toml ARGS`, with `stdin` fed in.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.cli_env(args, stdin, &[])
    }

    pub fn cli_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run wharf: {e}"));
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write;
            if let Some(text) = stdin {
                let _ = input.write_all(text.as_bytes());
            }
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wharf: {e}"))
    }

    /// Adds a service-managed user through the CLI; panics on failure.
    pub fn add_user(&self, name: &str, password: Option<&str>, extra: &[&str]) {
        let mut args = vec!["user", "add", name];
        if password.is_some() {
            args.push("--password-stdin");
        }
        args.extend_from_slice(extra);
        let out = self.cli(&args, password.map(|p| format!("{p}\n")).as_deref());
        assert!(
            out.status.success(),
            "user add {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `wharf serve` and waits until every configured protocol listens.
    pub fn start(mut self) -> Wharf {
        self.start_with_env(&[]);
        self
    }

    pub fn start_with_env(&mut self, env: &[(&str, &str)]) {
        let stdout =
            std::fs::File::create(&self.stdout).unwrap_or_else(|e| panic!("audit log: {e}"));
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start wharf: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = mpsc::channel::<String>();
        let lines = self.stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut all) = lines.lock() {
                    all.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("wharf did not become ready: {:?}", self.stderr_lines());
                }
            };
            let address = |tag: &str| {
                line.strip_prefix(&format!("wharf: {tag} listening on "))
                    .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            };
            if let Some(a) = address("SFTP") {
                self.sftp = Some(a);
            } else if let Some(a) = address("FTPS") {
                self.ftps = Some(a);
            } else if let Some(a) = address("FTP") {
                self.ftp = Some(a);
            } else if line == "wharf: ready" {
                break;
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn sftp_port(&self) -> u16 {
        self.sftp
            .map(|a| a.port())
            .unwrap_or_else(|| panic!("SFTP is not listening"))
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Every audit line so far.
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (polling the log file, with a deadline) for a line matching `f`.
    pub fn wait_for_log(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.log().into_iter().find(|l| f(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {what}: {:#?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for an AUTH_FAILURE of `user` whose reason contains `reason`.
    pub fn wait_for_auth_failure(&self, user: &str, reason: &str) -> Value {
        self.wait_for_log(&format!("AUTH_FAILURE of {user}: {reason}"), |l| {
            l["activity-type"] == "AUTH_FAILURE"
                && l["user"] == user
                && l["reason"].as_str().unwrap_or("").contains(reason)
        })
    }

    /// Waits for the AUTH_FAILURE of a connection from `ip` refused at
    /// accept (banned, too many not logged in, ...), and returns it.
    pub fn wait_for_refusal_at_accept(&self, ip: &str) -> Value {
        self.wait_for_log(&format!("a refusal at accept of {ip}"), |l| {
            l["activity-type"] == "AUTH_FAILURE"
                && l["source-ip"] == ip
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("connection refused at accept"))
        })
    }

    /// Lines with this activity type.
    pub fn activities(&self, activity: &str) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|l| l["activity-type"] == activity)
            .collect()
    }

    /// Sends a signal by PID and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let child = self.child.as_mut().unwrap_or_else(|| panic!("not running"));
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wharf did not exit after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(mut self) -> ExitStatus {
        self.signal_and_wait("TERM")
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How an OpenSSH client logs in.
#[derive(Debug, Clone)]
pub enum Login {
    Password(String),
    Key(PathBuf),
    /// Both, for `PUBLIC_KEY_AND_PASSWORD`.
    KeyAndPassword(PathBuf, String),
}

fn askpass(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join(format!("askpass-{}.sh", std::process::id()));
    let quoted = password.replace('\'', "'\\''");
    std::fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{quoted}'\n"))
        .unwrap_or_else(|e| panic!("askpass: {e}"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
    }
    path
}

fn ssh_options(command: &mut Command, login: &Login, dir: &Path) {
    command.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "ConnectTimeout=20",
    ]);
    match login {
        Login::Password(password) => {
            command
                .args([
                    "-o",
                    "PreferredAuthentications=password",
                    "-o",
                    "PubkeyAuthentication=no",
                ])
                .env("SSH_ASKPASS", askpass(dir, password))
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", "none");
        }
        Login::Key(key) => {
            command
                .args([
                    "-o",
                    "PreferredAuthentications=publickey",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-i",
                ])
                .arg(key)
                .env_remove("SSH_AUTH_SOCK");
        }
        Login::KeyAndPassword(key, password) => {
            command
                .args([
                    "-o",
                    "PreferredAuthentications=publickey,password",
                    "-o",
                    "IdentitiesOnly=yes",
                    "-i",
                ])
                .arg(key)
                .env_remove("SSH_AUTH_SOCK")
                .env("SSH_ASKPASS", askpass(dir, password))
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", "none");
        }
    }
    command.stdin(Stdio::null());
}

/// Runs `sftp -b BATCH` in `dir` and returns its output.
/// An OpenSSH `sftp` session held open: its batch comes from stdin, which
/// stays open until the child is dropped or its stdin closed.
pub fn sftp_session(port: u16, user: &str, login: &Login, dir: &Path) -> std::process::Child {
    sftp_session_with(port, user, login, dir, &[])
}

/// [`sftp_session`] with `extra` options (e.g. `-o BindAddress=...`).
pub fn sftp_session_with(
    port: u16,
    user: &str,
    login: &Login,
    dir: &Path,
    extra: &[&str],
) -> std::process::Child {
    let mut command = Command::new(require("sftp"));
    ssh_options(&mut command, login, dir);
    command
        .args(["-P", &port.to_string(), "-b", "-"])
        .args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command.spawn().unwrap_or_else(|e| panic!("sftp: {e}"))
}

pub fn sftp_batch(
    port: u16,
    user: &str,
    login: &Login,
    batch: &str,
    dir: &Path,
    extra: &[&str],
) -> Output {
    let batch_file = dir.join(format!("batch-{}", rand_suffix()));
    std::fs::write(&batch_file, batch).unwrap_or_else(|e| panic!("batch: {e}"));
    let mut command = Command::new(require("sftp"));
    ssh_options(&mut command, login, dir);
    command
        .args(["-P", &port.to_string(), "-b"])
        .arg(&batch_file)
        .args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .current_dir(dir);
    command.output().unwrap_or_else(|e| panic!("sftp: {e}"))
}

/// Runs `scp ARGS` (use `{port}` nowhere: the port is passed with -P).
pub fn scp(port: u16, login: &Login, args: &[&str], dir: &Path) -> Output {
    let mut command = Command::new(require("scp"));
    ssh_options(&mut command, login, dir);
    command
        .args(["-P", &port.to_string()])
        .args(args)
        .current_dir(dir);
    command.output().unwrap_or_else(|e| panic!("scp: {e}"))
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a Python script (from a file) with the test virtualenv's Python.
pub fn python(script: &Path, args: &[&str]) -> Output {
    Command::new(crate::tools::venv_python())
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python: {e}"))
}

/// Runs `curl -s -S --max-time 60 ARGS` in `dir` (FTP and FTPS tests).
pub fn curl(args: &[&str], dir: &Path) -> Output {
    Command::new(require("curl"))
        .args(["-s", "-S", "--max-time", "60"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"))
}
