//! FTPS and FTP end to end: a real gateway (filesystem store, service-managed
//! users) behind `FtpServer` on 127.0.0.1, driven by real clients: Python's
//! ftplib, curl and lftp.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wharf_audit::AuditLog;
use wharf_ftp::{FtpConfig, FtpServer, Resumption, TlsConfig, self_signed_certificate};
use wharf_identity::Password;
use wharf_identity::service_managed::{NewUser, ServiceManaged, UserStore};
use wharf_session::{Gateway, GatewayConfig};
use wharf_storage::filesystem::FilesystemStore;
use wharf_vfs::StoreHandle;

/// Control commands driven by hand over raw sockets.
#[path = "ftp/commands.rs"]
mod commands;

const PASSWORD: &str = "correct horse";
const DEADLINE: Duration = Duration::from_secs(20);

/// Where the audit log goes: a shared buffer.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn all(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn of(&self, activity: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|l| l["activity-type"] == activity)
            .collect()
    }

    /// Polls until a line matches, or fails after the deadline.
    async fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(line) = self.all().into_iter().find(&matches) {
                return line;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {what} line; log:\n{}",
                String::from_utf8_lossy(&self.0.lock())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Ftps(Resumption),
    Ftp,
}

struct Fixture {
    dir: tempfile::TempDir,
    gateway: Arc<Gateway>,
    addr: SocketAddr,
    lines: Lines,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    /// The store's directory of a user's home (`/default/NAME`).
    fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("default").join(user)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{path}", self.port())
    }

    fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join("client");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(DEADLINE, server)
                .await
                .expect("serve did not return after shutdown")
                .unwrap();
        }
    }
}

fn user(name: &str, policy: Option<Value>) -> NewUser {
    NewUser {
        username: name.into(),
        password: Some(Password::new(PASSWORD)),
        home_directory_type: "LOGICAL".into(),
        home_directory_details: Some(json!([{"Entry": "/", "Target": format!("/default/{name}")}])),
        policy,
        ..NewUser::default()
    }
}

/// A gateway over a filesystem store in a tempdir with the users `alice`
/// and `bob` (chrooted to /default/NAME), `carol` (also, but her session
/// policy denies deletes) and `dave` (PATH home /default/dave), and an
/// FTP(S) server on 127.0.0.1:0.
async fn start(mode: Mode) -> Fixture {
    start_with(mode, PASSIVE_PORTS, None).await
}

/// The passive ports of [`start`]'s servers.
const PASSIVE_PORTS: RangeInclusive<u16> = 40000..=60000;

/// [`start`] with passive ports of its own.
async fn start_with_ports(mode: Mode, passive_ports: RangeInclusive<u16>) -> Fixture {
    start_with(mode, passive_ports, None).await
}

/// [`start`] with passive ports of its own, and the PROXY protocol on when
/// `proxy` is given.
async fn start_with(
    mode: Mode,
    passive_ports: RangeInclusive<u16>,
    proxy: Option<wharf_listen::ProxyProtocol>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_root = dir.path().join("default");
    std::fs::create_dir_all(&store_root).unwrap();
    let users = UserStore::open_sqlite(&dir.path().join("users.db"))
        .await
        .unwrap();
    users.add(&user("alice", None)).await.unwrap();
    users.add(&user("bob", None)).await.unwrap();
    let no_delete = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
        ]
    });
    users.add(&user("carol", Some(no_delete))).await.unwrap();
    users
        .add(&NewUser {
            home_directory_type: "PATH".into(),
            home_directory: Some("/default/dave".into()),
            home_directory_details: None,
            ..user("dave", None)
        })
        .await
        .unwrap();
    let lines = Lines::default();
    let mut stores = BTreeMap::new();
    stores.insert(
        "default".to_owned(),
        Arc::new(StoreHandle {
            name: "default".into(),
            store: Arc::new(FilesystemStore::open(&store_root).unwrap()),
        }),
    );
    let gateway = Arc::new(Gateway::new(GatewayConfig {
        server_id: "s-ftptest".into(),
        provider: Arc::new(ServiceManaged::new(users, Duration::from_secs(5))),
        stores,
        roles: BTreeMap::new(),
        bucket_policies: BTreeMap::new(),
        audit: AuditLog::to_writer(Box::new(lines.clone())),
        limits: wharf_session::Limits::default(),
        guard: Arc::new(wharf_listen::Guard::new(
            wharf_listen::GuardConfig::default(),
        )),
    }));
    let tls = match mode {
        Mode::Ftp => None,
        Mode::Ftps(resumption) => {
            let (cert, key) =
                self_signed_certificate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
            let mut tls = TlsConfig::from_pem(&cert, &key).unwrap();
            tls.session_resumption = resumption;
            Some(tls)
        }
    };
    let server = ftp_server_with_ports(tls, gateway.clone(), passive_ports);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = serve(server, listener, shutdown.clone(), proxy.map(Arc::new));
    Fixture {
        dir,
        gateway,
        addr,
        lines,
        shutdown,
        server: Some(task),
    }
}

/// The production accept loop (`wharf_listen::serve`) for `server`, until
/// `drain` is cancelled: then sessions close between commands (421) and the
/// task returns when all have ended. Aborting the task aborts them.
fn serve(
    server: FtpServer,
    listener: TcpListener,
    drain: CancellationToken,
    proxy: Option<Arc<wharf_listen::ProxyProtocol>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = wharf_listen::Shutdown::new();
        let _abort_when_dropped = shutdown.abort.clone().drop_guard();
        let admission = wharf_listen::Admission {
            max_connections: 1000,
            guard: Arc::new(wharf_listen::Guard::new(
                wharf_listen::GuardConfig::default(),
            )),
            proxy,
        };
        let accept = wharf_listen::serve(
            listener,
            admission,
            shutdown.clone(),
            |_, _| {},
            move |accepted| {
                let server = server.clone();
                async move { server.serve_connection(accepted).await }
            },
        );
        tokio::select! {
            () = accept => {}
            () = drain.cancelled() => {}
        }
        shutdown.stop_accepting.cancel();
        shutdown.tasks.close();
        shutdown.tasks.wait().await;
    })
}

fn ftp_server(tls: Option<TlsConfig>, gateway: Arc<Gateway>) -> FtpServer {
    ftp_server_with_ports(tls, gateway, PASSIVE_PORTS)
}

fn ftp_server_with_ports(
    tls: Option<TlsConfig>,
    gateway: Arc<Gateway>,
    passive_ports: RangeInclusive<u16>,
) -> FtpServer {
    FtpServer::new(
        FtpConfig {
            tls,
            passive_ports,
            passive_address: None,
            idle_timeout: Duration::from_secs(60),
            banner: Some("wharf test server".into()),
        },
        gateway,
    )
    .unwrap()
}

struct Output {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(self) -> Output {
        assert!(
            self.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        let last = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{e}: stdout {:?} stderr {}", self.stdout, self.stderr))
    }
}

/// Runs a client to completion; killed (by its PID, on drop) after the
/// deadline.
async fn run(program: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().unwrap();
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in time"))
        .unwrap();
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Python helpers shared by the ftplib scripts.
const PRELUDE: &str = r#"
import ftplib, io, json, os, socket, ssl, struct, sys
PORT = int(os.environ["FTP_PORT"])
PASSWORD = os.environ["FTP_PASSWORD"]

class ReusingFTP_TLS(ftplib.FTP_TLS):
    """The standard trick: data connections resume the control connection's TLS session.
    `resume` may name another session instead (one of another control connection
    made with the same SSLContext), or None for a full handshake; the last data
    connection's session and whether it resumed are kept."""
    resume = "own"
    data_session = None
    data_reused = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            session = self.sock.session if self.resume == "own" else self.resume
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
            self.data_session = conn.session
            self.data_reused = conn.session_reused
            if self.on_data is not None:
                self.on_data()
        return conn, size

    on_data = None

    def transfercmd_plain(self, cmd, rest=None):
        """A data connection without TLS, whatever PROT says."""
        return ftplib.FTP.ntransfercmd(self, cmd, rest)[0]

def store(f, cmd, fp, rest=None):
    """storbinary, except that a missing TLS close_notify from the server
    after the upload is not an error (the server may close first)."""
    f.voidcmd("TYPE I")
    with f.transfercmd(cmd, rest) as conn:
        while True:
            buf = fp.read(65536)
            if not buf:
                break
            conn.sendall(buf)
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.unwrap()
            except ssl.SSLEOFError:
                pass
    return f.voidresp()

def refused(f, fn):
    """The reply code of a transfer the server refuses after its data
    connection opened (the TLS stream may end before the reply is read)."""
    try:
        fn()
    except ftplib.all_errors as e:
        if isinstance(e, ftplib.Error):
            return str(e)[:3]
        return code(f.voidresp)
    return None

def context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if os.environ.get("FTP_TLS12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx

def tls(user="alice", password=None, reuse=True, ctx=None, source=None):
    """A logged-in FTPS client with PROT P; `source`: the client's (address, port)."""
    cls = ReusingFTP_TLS if reuse else ftplib.FTP_TLS
    f = cls(context=ctx or context(), timeout=15)
    f.connect("127.0.0.1", PORT, source_address=source)
    f.login(user, PASSWORD if password is None else password)
    f.prot_p()
    return f

def plain(user="alice", password=None):
    f = ftplib.FTP(timeout=15)
    f.connect("127.0.0.1", PORT)
    f.login(user, PASSWORD if password is None else password)
    return f

def code(fn):
    """The reply code of an ftplib call that fails, or None when it succeeds."""
    try:
        fn()
    except ftplib.all_errors as e:
        return str(e)[:3]
    return None

def retr(f, name, rest=None):
    out = io.BytesIO()
    f.retrbinary("RETR " + name, out.write, rest=rest)
    return out.getvalue()

def epsv(f):
    """EPSV by hand (ftplib uses it only over IPv6)."""
    port = int(f.sendcmd("EPSV").split("|||")[1].split("|")[0])
    return socket.create_connection(("127.0.0.1", port), timeout=15)

def done(**result):
    print(json.dumps(result))
"#;

async fn python(fixture: &Fixture, script: &str) -> Output {
    python_with(fixture, script, &[]).await
}

async fn python_with(fixture: &Fixture, script: &str, env: &[(&str, String)]) -> Output {
    let code = format!("{PRELUDE}\n{script}");
    let mut all = vec![
        ("FTP_PORT", fixture.port().to_string()),
        ("FTP_PASSWORD", PASSWORD.to_owned()),
    ];
    all.extend_from_slice(env);
    run("python3", &["-c", &code], &all).await
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    for byte in &mut data {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = (state >> 24) as u8;
    }
    data
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftps_login_and_wrong_password() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let out = python(
        &fx,
        r#"
f = tls()
welcome = f.getwelcome()
pwd = f.pwd()
syst = f.sendcmd("SYST")
feat = f.sendcmd("FEAT")
noop = f.sendcmd("NOOP")
typ = f.sendcmd("TYPE I")
utf8 = f.sendcmd("OPTS UTF8 ON")
f.quit()
wrong = code(lambda: tls(password="wrong"))
nobody = code(lambda: tls(user="nobody"))
done(welcome=welcome, pwd=pwd, syst=syst, feat=feat, noop=noop, type=typ, utf8=utf8, wrong=wrong, nobody=nobody)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["welcome"], "220 wharf test server");
    assert_eq!(out["pwd"], "/");
    assert!(out["syst"].as_str().unwrap().starts_with("215"), "{out}");
    let feat = out["feat"].as_str().unwrap();
    for feature in [
        "AUTH TLS",
        "PROT",
        "PBSZ",
        "EPSV",
        "MLST",
        "SIZE",
        "MDTM",
        "UTF8",
        "REST STREAM",
    ] {
        assert!(feat.contains(feature), "FEAT lacks {feature}: {feat}");
    }
    assert!(!feat.contains("MD5"), "{feat}");
    assert!(out["noop"].as_str().unwrap().starts_with("200"), "{out}");
    assert!(out["type"].as_str().unwrap().starts_with("200"), "{out}");
    assert!(out["utf8"].as_str().unwrap().starts_with("200"), "{out}");
    assert_eq!(out["wrong"], "530");
    assert_eq!(out["nobody"], "530");

    let connected = fx.lines.of("CONNECTED");
    assert_eq!(connected.len(), 1, "{connected:?}");
    assert_eq!(connected[0]["user"], "alice");
    assert_eq!(connected[0]["protocol"], "FTPS");
    assert_eq!(connected[0]["source-ip"], "127.0.0.1");
    assert!(connected[0].get("client").is_none());
    let failures = fx.lines.of("AUTH_FAILURE");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().all(|l| l["protocol"] == "FTPS"));
    assert!(failures.iter().any(|l| l["reason"] == "wrong password"));
    fx.lines
        .wait_for("DISCONNECTED", |l| {
            l["activity-type"] == "DISCONNECTED" && l["user"] == "alice"
        })
        .await;
    let text = String::from_utf8(fx.lines.0.lock().clone()).unwrap();
    assert!(!text.contains(PASSWORD), "a password reached the log");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftps_refuses_clear_control_and_clear_data() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    write_file(&fx.home("alice").join("file.txt"), b"secret");
    let out = python(
        &fx,
        r#"
# USER before AUTH TLS
f = ftplib.FTP(timeout=15)
f.connect("127.0.0.1", PORT)
user_first = code(lambda: f.sendcmd("USER alice"))
f.close()

# PROT C: no passive port, no transfer.
f = tls()
f.prot_c()
pasv = code(lambda: f.sendcmd("PASV"))
epsv_clear = code(lambda: f.sendcmd("EPSV"))
retr_clear = code(lambda: f.sendcmd("RETR file.txt"))
# PROT P again: the same download works.
f.prot_p()
ok = retr(f, "file.txt").decode()
# CCC cannot downgrade the control channel.
ccc = code(lambda: f.sendcmd("CCC"))
f.quit()
done(user_first=user_first, pasv=pasv, epsv_clear=epsv_clear, retr_clear=retr_clear, ok=ok, ccc=ccc)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["user_first"], "534", "{out}");
    assert_eq!(out["pasv"], "534", "{out}");
    assert_eq!(out["epsv_clear"], "534", "{out}");
    assert_eq!(out["retr_clear"], "534", "{out}");
    assert_eq!(out["ok"], "secret", "{out}");
    assert_eq!(out["ccc"], "534", "{out}");
    let refused = fx.lines.of("ERROR");
    assert!(
        refused
            .iter()
            .any(|l| l["reason"].as_str().unwrap_or("").contains("PROT P")),
        "{refused:?}"
    );
    // The refused RETR never opened the file.
    assert_eq!(fx.lines.of("OPEN").len(), 1);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftplib_upload_download_and_restart() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let data = random_bytes(3 << 20);
    let local = fx.scratch("big.bin");
    write_file(&local, &data);
    let out = python(
        &fx,
        &format!(
            r#"
f = tls()
version = f.sock.version()
with open({local:?}, "rb") as src:
    store(f, "STOR big.bin", src)
back = retr(f, "big.bin")
tail = retr(f, "big.bin", rest=1000000)
with open({local:?}, "rb") as src:
    whole = src.read()
f.quit()
done(version=version, same=back == whole, tail=tail == whole[1000000:], tail_len=len(tail))
"#,
            local = local.to_str().unwrap()
        ),
    )
    .await
    .ok()
    .json();
    assert_eq!(out["same"], true, "{out}");
    assert_eq!(out["tail"], true, "{out}");
    assert_eq!(
        std::fs::read(fx.home("alice").join("big.bin")).unwrap(),
        data
    );
    eprintln!("control channel TLS version: {}", out["version"]);

    let opens = fx.lines.of("OPEN");
    assert_eq!(opens.len(), 3, "{opens:?}");
    assert_eq!(opens[0]["mode"], "CREATE|TRUNCATE|WRITE");
    assert_eq!(opens[0]["path"], "/default/alice/big.bin");
    assert_eq!(opens[1]["mode"], "READ");
    let closes = fx.lines.of("CLOSE");
    assert_eq!(closes.len(), 3, "{closes:?}");
    assert_eq!(closes[0]["bytes-in"], data.len());
    assert_eq!(closes[1]["bytes-out"], data.len());
    assert_eq!(closes[2]["bytes-out"], data.len() - 1_000_000);
    assert!(fx.lines.of("PARTIAL_CLOSE").is_empty());
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_and_metadata() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let home = fx.home("alice");
    write_file(&home.join("a.txt"), b"hello");
    write_file(&home.join("dir/b.txt"), b"12345678");
    let out = python(
        &fx,
        r#"
f = tls()
lines = []
f.retrlines("LIST", lines.append)
names = sorted(f.nlst())
mlsd = {name: facts for name, facts in f.mlsd()}
sub = sorted(f.nlst("dir"))
file_list = []
f.retrlines("LIST a.txt", file_list.append)
size = f.sendcmd("SIZE a.txt")
size_sub = f.size("dir/b.txt")
mdtm = f.sendcmd("MDTM a.txt")
mlst = f.sendcmd("MLST a.txt")
stat = f.sendcmd("STAT dir")
missing = code(lambda: f.sendcmd("SIZE missing.txt"))
f.cwd("dir")
pwd = f.pwd()
inner = f.nlst()
f.sendcmd("CDUP")
back = f.pwd()
cwd_file = code(lambda: f.cwd("a.txt"))
cwd_missing = code(lambda: f.cwd("nowhere"))
f.quit()
done(lines=lines, names=names, mlsd=mlsd, sub=sub, file_list=file_list, size=size, size_sub=size_sub,
     mdtm=mdtm, mlst=mlst, stat=stat, missing=missing, pwd=pwd, inner=inner, back=back,
     cwd_file=cwd_file, cwd_missing=cwd_missing)
"#,
    )
    .await
    .ok()
    .json();
    let lines: Vec<&str> = out["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('-') && l.ends_with(" a.txt") && l.contains(" 5 ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('d') && l.ends_with(" dir")),
        "{lines:?}"
    );
    assert_eq!(out["names"], json!(["a.txt", "dir"]));
    assert_eq!(out["mlsd"]["a.txt"]["type"], "file");
    assert_eq!(out["mlsd"]["a.txt"]["size"], "5");
    assert_eq!(out["mlsd"]["dir"]["type"], "dir");
    assert_eq!(out["sub"], json!(["b.txt"]));
    let file_list = out["file_list"].as_array().unwrap();
    assert_eq!(file_list.len(), 1);
    assert!(file_list[0].as_str().unwrap().ends_with(" a.txt"));
    assert_eq!(out["size"], "213 5");
    assert_eq!(out["size_sub"], 8);
    let mdtm = out["mdtm"].as_str().unwrap();
    assert!(mdtm.starts_with("213 20") && mdtm.len() == 18, "{mdtm}");
    assert!(
        out["mlst"].as_str().unwrap().contains("type=file;size=5;"),
        "{out}"
    );
    assert!(out["stat"].as_str().unwrap().contains("b.txt"), "{out}");
    assert_eq!(out["missing"], "550");
    assert_eq!(out["pwd"], "/dir");
    assert_eq!(out["inner"], json!(["b.txt"]));
    assert_eq!(out["back"], "/");
    assert_eq!(out["cwd_file"], "550");
    assert_eq!(out["cwd_missing"], "550");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_deletes_and_renames() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let home = fx.home("alice");
    write_file(&home.join("old.txt"), b"content");
    write_file(&home.join("gone.txt"), b"x");
    let out = python(
        &fx,
        r#"
f = tls()
mkd = f.sendcmd("MKD newdir")
again = code(lambda: f.mkd("newdir"))
store(f, "STOR newdir/inside.txt", io.BytesIO(b"inside"))
not_empty = code(lambda: f.rmd("newdir"))
f.delete("newdir/inside.txt")
rmd = f.rmd("newdir")
rmd_missing = code(lambda: f.rmd("newdir"))
dele = f.delete("gone.txt")
dele_missing = code(lambda: f.delete("gone.txt"))
rnfr = f.sendcmd("RNFR old.txt")
rnto = f.sendcmd("RNTO new.txt")
rnfr_missing = code(lambda: f.sendcmd("RNFR old.txt"))
names = sorted(f.nlst())
f.quit()
done(mkd=mkd, again=again, not_empty=not_empty, rmd=rmd, rmd_missing=rmd_missing, dele=dele,
     dele_missing=dele_missing, rnfr=rnfr[:3], rnto=rnto[:3], rnfr_missing=rnfr_missing, names=names)
"#,
    )
    .await
    .ok()
    .json();
    assert!(
        out["mkd"].as_str().unwrap().starts_with("257 \"/newdir\""),
        "{out}"
    );
    assert_eq!(out["again"], "550");
    assert_eq!(out["not_empty"], "550");
    assert!(out["rmd"].as_str().unwrap().starts_with("250"), "{out}");
    assert_eq!(out["rmd_missing"], "550");
    assert!(out["dele"].as_str().unwrap().starts_with("250"), "{out}");
    assert_eq!(out["dele_missing"], "550");
    assert_eq!(out["rnfr"], "350");
    assert_eq!(out["rnto"], "250");
    assert_eq!(out["rnfr_missing"], "550");
    assert_eq!(out["names"], json!(["new.txt"]));
    assert_eq!(std::fs::read(home.join("new.txt")).unwrap(), b"content");
    assert!(!home.join("newdir").exists());
    for activity in ["MKDIR", "RMDIR", "DELETE", "RENAME"] {
        assert!(!fx.lines.of(activity).is_empty(), "no {activity} line");
    }
    let rename = &fx.lines.of("RENAME")[0];
    assert_eq!(rename["path"], "/default/alice/old.txt");
    assert_eq!(rename["new-path"], "/default/alice/new.txt");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_upload_restart_are_refused() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let home = fx.home("alice");
    write_file(&home.join("log.txt"), b"first\n");
    let out = python(
        &fx,
        r#"
f = tls()
# Refused before any data connection is used.
appe = code(lambda: f.transfercmd("APPE log.txt"))
rest_stor = code(lambda: f.transfercmd("STOR log.txt", 3))
appe_dir = code(lambda: f.transfercmd("APPE ."))
# APPE to a new file creates it, as STOR would.
new = store(f, "APPE new.txt", io.BytesIO(b"new\n"))[:3]
f.quit()
done(appe=appe, rest_stor=rest_stor, appe_dir=appe_dir, new=new)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["appe"], "502", "{out}");
    assert_eq!(out["rest_stor"], "502", "{out}");
    assert_eq!(out["appe_dir"], "550", "{out}");
    assert_eq!(out["new"], "226", "{out}");
    assert_eq!(std::fs::read(home.join("log.txt")).unwrap(), b"first\n");
    assert_eq!(std::fs::read(home.join("new.txt")).unwrap(), b"new\n");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_stay_inside_the_home() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    write_file(&fx.home("alice").join("mine.txt"), b"alice's");
    write_file(&fx.home("bob").join("secret.txt"), b"bob's");
    let out = python(
        &fx,
        r#"
f = tls()
f.cwd("../../..")
names = sorted(f.nlst())
mine = retr(f, "mine.txt").decode()
passwd = code(lambda: retr(f, "../../etc/passwd"))
passwd_abs = code(lambda: retr(f, "/etc/passwd"))
bob = code(lambda: retr(f, "../bob/secret.txt"))
bob_cwd = code(lambda: f.cwd("/../bob"))
up = code(lambda: store(f, "STOR ../../escaped.txt", io.BytesIO(b"x")))
nul = code(lambda: f.sendcmd("SIZE a\x00b"))
long_name = code(lambda: f.sendcmd("SIZE " + "x" * 300))
f.quit()
done(names=names, mine=mine, passwd=passwd, passwd_abs=passwd_abs, bob=bob, bob_cwd=bob_cwd, up=up,
     nul=nul, long_name=long_name)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["names"], json!(["mine.txt"]), "{out}");
    assert_eq!(out["mine"], "alice's");
    assert_eq!(out["passwd"], "550");
    assert_eq!(out["passwd_abs"], "550");
    assert_eq!(out["bob"], "550");
    // `/../bob` is `/bob` in alice's chroot: not there.
    assert_eq!(out["bob_cwd"], "550");
    assert!(out["up"].is_null(), "{out}");
    assert!(fx.home("alice").join("escaped.txt").exists());
    assert!(!fx.dir.path().join("escaped.txt").exists());
    assert_ne!(out["nul"], json!(null), "{out}");
    assert_eq!(out["long_name"], "553", "{out}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denial_is_550_and_logged() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    write_file(&fx.home("carol").join("keep.txt"), b"keep");
    let out = python(
        &fx,
        r#"
f = tls(user="carol")
dele = code(lambda: f.delete("keep.txt"))
store(f, "STOR other.txt", io.BytesIO(b"fine"))
f.quit()
done(dele=dele)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["dele"], "550");
    assert!(fx.home("carol").join("keep.txt").exists());
    assert!(fx.home("carol").join("other.txt").exists());
    let denied = fx.lines.of("ACCESS_DENIED");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["user"], "carol");
    assert_eq!(denied[0]["operation"], "DELETE");
    assert_eq!(denied[0]["protocol"], "FTPS");
    assert!(
        denied[0]["message"]
            .as_str()
            .unwrap()
            .contains("s3:DeleteObject")
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_uploads_leave_nothing() {
    // FTPS: the data connection stops without a TLS close_notify.
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let out = python(
        &fx,
        r#"
f = tls()
conn = f.transfercmd("STOR dropped.bin")
conn.sendall(b"x" * (1 << 20))
conn.close()  # no unwrap(): the TLS stream is cut short
reply = code(f.voidresp)
f.sock.close()
done(reply=reply)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["reply"], "426", "{out}");
    let partial = fx
        .lines
        .wait_for("PARTIAL_CLOSE", |l| l["activity-type"] == "PARTIAL_CLOSE")
        .await;
    assert_eq!(partial["path"], "/default/alice/dropped.bin");
    assert!(!fx.home("alice").join("dropped.bin").exists());
    assert!(fx.lines.of("CLOSE").is_empty());

    // FTPS: curl killed (by its PID) in the middle of an upload from a pipe.
    let mut curl = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--ssl-reqd",
            "-k",
            "-u",
            &format!("alice:{PASSWORD}"),
            "-T",
            "-",
        ])
        .arg(fx.url("killed.bin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = curl.stdin.take().unwrap();
    let feed = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let chunk = vec![b'y'; 64 * 1024];
        // Keeps feeding until curl is gone.
        while stdin.write_all(&chunk).await.is_ok() {}
    });
    fx.lines
        .wait_for("OPEN of killed.bin", |l| {
            l["activity-type"] == "OPEN" && l["path"] == "/default/alice/killed.bin"
        })
        .await;
    curl.kill().await.unwrap();
    feed.await.unwrap();
    fx.lines
        .wait_for("PARTIAL_CLOSE of killed.bin", |l| {
            l["activity-type"] == "PARTIAL_CLOSE" && l["path"] == "/default/alice/killed.bin"
        })
        .await;
    assert!(!fx.home("alice").join("killed.bin").exists());
    assert!(fx.lines.of("CLOSE").is_empty());
    fx.stop().await;

    // Plain FTP: a reset data connection. (A plain FIN cannot be told from
    // the end of the file: that is STREAM mode without TLS.)
    let fx = start(Mode::Ftp).await;
    let out = python(
        &fx,
        r#"
f = plain()
conn = f.transfercmd("STOR dropped.bin")
conn.sendall(b"x" * (1 << 20))
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
reply = code(f.voidresp)
f.quit()
done(reply=reply)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["reply"], "426", "{out}");
    fx.lines
        .wait_for("PARTIAL_CLOSE", |l| l["activity-type"] == "PARTIAL_CLOSE")
        .await;
    assert!(!fx.home("alice").join("dropped.bin").exists());
    assert!(fx.lines.of("CLOSE").is_empty());
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumption_modes() {
    let script = r#"
results = {}
for reuse in (True, False):
    f = tls(reuse=reuse)
    suffix = "reuse" if reuse else "fresh"
    results["list_" + suffix] = refused(f, f.nlst)
    results["retr_" + suffix] = refused(f, lambda: retr(f, "file.txt"))
    results["stor_" + suffix] = refused(f, lambda: store(f, "STOR up.txt", io.BytesIO(b"up")))
    f.quit()
done(**results)
"#;
    // Enforced: only data connections that resume the control session.
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    write_file(&fx.home("alice").join("file.txt"), b"data");
    let out = python(&fx, script).await.ok().json();
    assert!(out["list_reuse"].is_null(), "{out}");
    assert!(out["retr_reuse"].is_null(), "{out}");
    assert!(out["stor_reuse"].is_null(), "{out}");
    assert_eq!(out["list_fresh"], "550", "{out}");
    assert_eq!(out["retr_fresh"], "550", "{out}");
    assert_eq!(out["stor_fresh"], "550", "{out}");
    let refused = fx.lines.of("ERROR");
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().all(|l| {
        l["message"] == "data connection refused"
            && l["reason"].as_str().unwrap().contains("did not resume")
    }));
    fx.stop().await;

    // TLS 1.2 (session IDs and tickets; data connections get an empty ticket).
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    write_file(&fx.home("alice").join("file.txt"), b"data");
    let tls12 = [("FTP_TLS12", "1".to_owned())];
    let out = python_with(&fx, script, &tls12).await.ok().json();
    for key in ["list_reuse", "retr_reuse", "stor_reuse"] {
        assert!(out[key].is_null(), "TLS 1.2: {out}");
    }
    for key in ["list_fresh", "retr_fresh", "stor_fresh"] {
        assert_eq!(out[key], "550", "TLS 1.2: {out}");
    }
    // Many transfers on one session, each resuming.
    let many = r#"
f = tls()
version = f.sock.version()
for i in range(5):
    store(f, "STOR f%d.txt" % i, io.BytesIO(b"x" * i))
    assert retr(f, "f%d.txt" % i) == b"x" * i
    f.nlst()
f.quit()
done(version=version)
"#;
    let out = python_with(&fx, many, &tls12).await.ok().json();
    assert_eq!(out["version"], "TLSv1.2");
    let out = python(&fx, many).await.ok().json();
    assert_eq!(out["version"], "TLSv1.3");
    // curl, TLS 1.2, two downloads on one connection.
    let user = format!("alice:{PASSWORD}");
    let url = fx.url("file.txt");
    let tls12_curl = [
        "-sS",
        "--ssl-reqd",
        "-k",
        "--tls-max",
        "1.2",
        "-u",
        &user,
        &url,
        &url,
    ];
    let out = run("curl", &tls12_curl, &[]).await.ok();
    assert_eq!(out.stdout, "datadata");
    assert!(
        fx.lines.of("ERROR").len() == 3,
        "{:?}",
        fx.lines.of("ERROR")
    );
    fx.stop().await;

    // Enabled and disabled: both kinds of client work.
    for mode in [Resumption::Enabled, Resumption::Disabled] {
        let fx = start(Mode::Ftps(mode)).await;
        write_file(&fx.home("alice").join("file.txt"), b"data");
        let out = python(&fx, script).await.ok().json();
        for key in [
            "list_reuse",
            "retr_reuse",
            "stor_reuse",
            "list_fresh",
            "retr_fresh",
            "stor_fresh",
        ] {
            assert!(out[key].is_null(), "{mode:?}: {out}");
        }
        assert!(fx.lines.of("ERROR").is_empty(), "{mode:?}");
        fx.stop().await;
    }
}

/// SPEC section 2: with `tls_session_resumption = "enforced"` a data
/// connection must resume a TLS session this server issued to a control
/// connection of the same user from the same client address: clients like
/// rclone share one session cache between several control connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_connections_resume_sessions_of_the_same_user_and_address() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let script = r#"
ctx = context()
first = tls(ctx=ctx)
second = tls(ctx=ctx)
bob = tls(user="bob", ctx=ctx)
elsewhere = tls(ctx=ctx, source=("127.0.0.2", 0))
version = first.sock.version()
session = first.sock.session
r = {}
r["own"] = refused(second, second.nlst)
# The session of a sibling control connection: same user, same address.
second.resume = session
r["sibling"] = refused(second, second.nlst)
r["sibling_reused"] = second.data_reused
# Alice's session on a data connection of bob's.
bob.resume = session
r["other_user"] = refused(bob, bob.nlst)
bob.resume = "own"
r["other_user_own"] = refused(bob, bob.nlst)
# Alice's session from 127.0.0.1 on a data connection of alice from 127.0.0.2.
elsewhere.resume = session
r["other_address"] = refused(elsewhere, elsewhere.nlst)
elsewhere.resume = "own"
r["other_address_own"] = refused(elsewhere, elsewhere.nlst)
# The first control connection ends; a pooled client still resumes its session.
first.quit()
print("first closed", flush=True)
sys.stdin.readline()
r["closed_sibling"] = refused(second, second.nlst)
r["closed_sibling_reused"] = second.data_reused
# A full handshake is refused, and leaves the client no session to resume.
second.resume = None
r["fresh"] = refused(second, second.nlst)
second.resume = second.data_session
r["fresh_again"] = refused(second, second.nlst)
for f in (second, bob, elsewhere):
    f.quit()
done(version=version, **r)
"#;
    for (version, env) in [
        ("TLSv1.3", vec![]),
        ("TLSv1.2", vec![("FTP_TLS12", "1".to_owned())]),
    ] {
        let fx = start(Mode::Ftps(Resumption::Enforced)).await;
        for user in ["alice", "bob"] {
            write_file(&fx.home(user).join("file.txt"), b"data");
        }
        let mut command = tokio::process::Command::new("python3");
        command
            .arg("-c")
            .arg(format!("{PRELUDE}\n{script}"))
            .env("FTP_PORT", fx.port().to_string())
            .env("FTP_PASSWORD", PASSWORD)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in &env {
            command.env(key, value);
        }
        let mut client = command.spawn().unwrap();
        let mut stdin = client.stdin.take().unwrap();
        let mut stdout = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(DEADLINE, stdout.next_line())
            .await
            .unwrap()
            .unwrap();
        if line.as_deref() != Some("first closed") {
            let output = tokio::time::timeout(DEADLINE, client.wait_with_output())
                .await
                .unwrap()
                .unwrap();
            panic!(
                "{version}: {line:?}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // The first control connection is gone on the server side too.
        fx.lines
            .wait_for("DISCONNECTED", |l| l["activity-type"] == "DISCONNECTED")
            .await;
        stdin.write_all(b"go\n").await.unwrap();
        let result = tokio::time::timeout(DEADLINE, stdout.next_line())
            .await
            .unwrap()
            .unwrap();
        let output = tokio::time::timeout(DEADLINE, client.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{version}: {stderr}");
        let out: Value = serde_json::from_str(result.as_deref().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{version}: {e}: {result:?} {stderr}"));
        assert_eq!(out["version"], version, "{out}");
        for accepted in [
            "own",
            "sibling",
            "other_user_own",
            "other_address_own",
            "closed_sibling",
        ] {
            assert!(out[accepted].is_null(), "{version} {accepted}: {out}");
        }
        assert_eq!(out["sibling_reused"], true, "{version}: {out}");
        assert_eq!(out["closed_sibling_reused"], true, "{version}: {out}");
        for refused in ["other_user", "other_address", "fresh", "fresh_again"] {
            assert_eq!(out[refused], "550", "{version} {refused}: {out}");
        }
        let errors = fx.lines.of("ERROR");
        assert_eq!(errors.len(), 4, "{version}: {errors:?}");
        assert!(errors.iter().all(|l| {
            l["message"] == "data connection refused"
                && l["reason"].as_str().unwrap().contains("did not resume")
        }));
        let from_elsewhere = errors
            .iter()
            .filter(|l| l["source-ip"] == "127.0.0.2" && l["user"] == "alice")
            .count();
        assert_eq!(from_elsewhere, 1, "{version}: {errors:?}");
        assert_eq!(
            errors.iter().filter(|l| l["user"] == "bob").count(),
            1,
            "{version}: {errors:?}"
        );
        fx.stop().await;
    }
}

/// rclone stores the TLS session of a new control connection as soon as its
/// handshake is done and may resume it on a data connection of another
/// control connection before the new one has logged in: the data
/// connection's verdict then waits for that login, which must be the same
/// user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_a_connection_not_yet_logged_in_waits_for_its_login() {
    let script = r#"
import threading
ctx = context()
first = tls(ctx=ctx)
r = {}
for case, user, password in (("same_user", "alice", PASSWORD), ("other_user", "bob", PASSWORD),
                             ("wrong_password", "alice", "wrong"), ("no_login", "alice", None)):
    second = ReusingFTP_TLS(context=ctx, timeout=15)
    second.connect("127.0.0.1", PORT)
    second.auth()
    second.sendcmd("USER " + user)   # reads the TLS 1.3 tickets too
    first.resume = second.sock.session
    handshake = threading.Event()
    first.on_data = handshake.set
    out = {}
    def transfer():
        out["code"] = refused(first, first.nlst)
    thread = threading.Thread(target=transfer)
    thread.start()
    # The data connection has resumed the session of `second`, which has
    # not logged in yet.
    assert handshake.wait(15)
    if password is None:
        second.close()
    else:
        out["login"] = code(lambda: second.sendcmd("PASS " + password))
        if out["login"] is not None:
            second.close()
    thread.join(20)
    r[case] = out.get("code")
    r[case + "_login"] = out.get("login")
    first.on_data = None
    if case in ("same_user", "other_user"):
        second.quit()
first.resume = "own"
r["own_after"] = refused(first, first.nlst)
first.quit()
done(**r)
"#;
    for env in [vec![], vec![("FTP_TLS12", "1".to_owned())]] {
        let fx = start(Mode::Ftps(Resumption::Enforced)).await;
        write_file(&fx.home("alice").join("file.txt"), b"data");
        let out = python_with(&fx, script, &env).await.ok().json();
        assert!(out["same_user"].is_null(), "{env:?}: {out}");
        assert!(out["same_user_login"].is_null(), "{env:?}: {out}");
        assert_eq!(out["other_user"], "550", "{env:?}: {out}");
        assert!(out["other_user_login"].is_null(), "{env:?}: {out}");
        assert_eq!(out["wrong_password"], "550", "{env:?}: {out}");
        assert_eq!(out["wrong_password_login"], "530", "{env:?}: {out}");
        assert_eq!(out["no_login"], "550", "{env:?}: {out}");
        assert!(out["own_after"].is_null(), "{env:?}: {out}");
        let errors = fx.lines.of("ERROR");
        assert_eq!(errors.len(), 3, "{env:?}: {errors:?}");
        assert!(
            errors.iter().all(|l| l["user"] == "alice"
                && l["reason"].as_str().unwrap().contains("did not resume"))
        );
        fx.stop().await;
    }
}

async fn curl(args: &[&str]) -> Output {
    let mut all = vec!["-sS", "--max-time", "15", "-u"];
    let user = format!("alice:{PASSWORD}");
    all.push(&user);
    all.extend_from_slice(args);
    run("curl", &all, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_ftps() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let data = random_bytes(2 << 20);
    let local = fx.scratch("up.bin");
    write_file(&local, &data);
    let url = fx.url("up.bin");
    let root = fx.url("");
    let ftps = |args: &[&str]| {
        let mut all = vec!["--ssl-reqd", "-k"];
        all.extend_from_slice(args);
        all.iter().map(|a| a.to_string()).collect::<Vec<String>>()
    };
    let with = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args).await.ok()
    };
    with(ftps(&["-T", local.to_str().unwrap(), &url])).await;
    assert_eq!(
        std::fs::read(fx.home("alice").join("up.bin")).unwrap(),
        data
    );

    let down = fx.scratch("down.bin");
    with(ftps(&["-o", down.to_str().unwrap(), &url])).await;
    assert_eq!(std::fs::read(&down).unwrap(), data);

    // `-C -`: resume a partial download (SIZE, REST, RETR).
    let partial = fx.scratch("partial.bin");
    write_file(&partial, &data[..700_000]);
    with(ftps(&["-C", "-", "-o", partial.to_str().unwrap(), &url])).await;
    assert_eq!(std::fs::read(&partial).unwrap(), data);
    let reads: Vec<Value> = fx
        .lines
        .of("CLOSE")
        .into_iter()
        .filter(|l| l.get("bytes-out").is_some())
        .collect();
    assert_eq!(reads.last().unwrap()["bytes-out"], data.len() - 700_000);

    let out = with(ftps(&[&root])).await;
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with('-') && l.ends_with(" up.bin")),
        "{}",
        out.stdout
    );
    let out = with(ftps(&["-l", &root])).await;
    assert_eq!(out.stdout.trim(), "up.bin");

    // Without TLS curl cannot log in.
    let out = curl(&[&root]).await;
    assert!(!out.status.success());
    assert!(
        fx.lines.of("ERROR").is_empty(),
        "{:?}",
        fx.lines.of("ERROR")
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_over_ftps() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let data = random_bytes(3 << 20);
    let local = fx.scratch("lftp.bin");
    write_file(&local, &data);
    let back = fx.scratch("lftp-back.bin");
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; \
         set net:max-retries 1; set net:timeout 10; set xfer:clobber true; \
         open -u alice,\"{PASSWORD}\" -p {port} 127.0.0.1; \
         put {local} -o remote.bin; get remote.bin -o {back}; mkdir sub; cls -1; rmdir sub; rm remote.bin; cls -1; bye",
        port = fx.port(),
        local = local.display(),
        back = back.display(),
    );
    let out = run(
        "lftp",
        &["-c", &script],
        &[("HOME", fx.dir.path().display().to_string())],
    )
    .await
    .ok();
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let listed: Vec<&str> = out.stdout.lines().collect();
    assert!(listed.contains(&"remote.bin"), "{}", out.stdout);
    assert!(listed.contains(&"sub/"), "{}", out.stdout);
    assert!(!fx.home("alice").join("remote.bin").exists());
    let uploads: Vec<Value> = fx
        .lines
        .of("CLOSE")
        .into_iter()
        .filter(|l| l.get("bytes-in").is_some())
        .collect();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0]["bytes-in"], data.len());
    assert!(
        fx.lines.of("ERROR").is_empty(),
        "{:?}",
        fx.lines.of("ERROR")
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ftp_with_curl() {
    let fx = start(Mode::Ftp).await;
    let data = random_bytes(1 << 20);
    let local = fx.scratch("plain.bin");
    write_file(&local, &data);
    curl(&["-T", local.to_str().unwrap(), &fx.url("plain.bin")])
        .await
        .ok();
    assert_eq!(
        std::fs::read(fx.home("alice").join("plain.bin")).unwrap(),
        data
    );
    let down = fx.scratch("plain-down.bin");
    curl(&["-o", down.to_str().unwrap(), &fx.url("plain.bin")])
        .await
        .ok();
    assert_eq!(std::fs::read(&down).unwrap(), data);
    let out = curl(&["-l", &fx.url("")]).await.ok();
    assert_eq!(out.stdout.trim(), "plain.bin");
    // No TLS here: AUTH TLS is not offered.
    let out = curl(&["--ssl-reqd", &fx.url("")]).await;
    assert!(!out.status.success());
    let connected = fx.lines.of("CONNECTED");
    assert!(!connected.is_empty());
    assert!(connected.iter().all(|l| l["protocol"] == "FTP"));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_sessions() {
    use tokio::io::AsyncBufReadExt;
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let addr = fx.addr;
    // A logged-in session that stays idle until the server closes it.
    let script = r#"
f = tls()
print("ready", flush=True)
f.sock.settimeout(30)
got = b""
try:
    while True:
        chunk = f.sock.recv(100)
        if not chunk:
            break
        got += chunk
except OSError:
    pass
done(closed=True, reply=got.decode()[:3])
"#;
    let mut client = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .env("FTP_PORT", addr.port().to_string())
        .env("FTP_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(client.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(DEADLINE, stdout.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    let mut fx = fx;
    fx.shutdown.cancel();
    let server = fx.server.take().unwrap();
    tokio::time::timeout(DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
    let result = tokio::time::timeout(DEADLINE, stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // 421, then the connection closes.
    assert_eq!(result, r#"{"closed": true, "reply": "421"}"#);
    let status = tokio::time::timeout(DEADLINE, client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    fx.lines
        .wait_for("DISCONNECTED", |l| l["activity-type"] == "DISCONNECTED")
        .await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_data_handshake_does_not_open_the_clear_channel() {
    // Resumption only enabled: the check at stake is "PROT P", not "resumed".
    let fx = start(Mode::Ftps(Resumption::Enabled)).await;
    write_file(&fx.home("alice").join("file.txt"), b"secret");
    let out = python(
        &fx,
        r#"
f = tls()
# A data connection whose TLS handshake starts (a real ClientHello) and then
# breaks off: 425, and the session goes on.
s = epsv(f)
f.putcmd("RETR file.txt")
first = f.getresp()[:3]
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
hello = context().wrap_bio(incoming, outgoing, server_hostname="localhost")
try:
    hello.do_handshake()
except ssl.SSLWantReadError:
    pass
s.sendall(outgoing.read())
s.recv(1)  # the server answered the hello
s.close()
first_final = code(f.voidresp)
# Then the same download works.
ok = retr(f, "file.txt").decode()
f.quit()
done(first=first, first_final=first_final, ok=ok)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["first"], "150", "{out}");
    assert_eq!(out["first_final"], "425", "{out}");
    assert_eq!(out["ok"], "secret", "{out}");
    // The file was opened for the broken transfer too, and closed partially.
    assert_eq!(fx.lines.of("OPEN").len(), 2);
    fx.lines
        .wait_for("PARTIAL_CLOSE", |l| l["activity-type"] == "PARTIAL_CLOSE")
        .await;
    assert_eq!(fx.lines.of("CLOSE").len(), 1);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_serve_connection_ends_the_session() {
    let fx = start(Mode::Ftp).await;
    // A second server over the same gateway, on the caller's accept loop.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ftp_server(None, fx.gateway.clone());
    let accepted = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let guard = Arc::new(wharf_listen::Guard::new(
            wharf_listen::GuardConfig::default(),
        ));
        let local = stream.local_addr().unwrap();
        server
            .serve_connection(wharf_listen::Accepted {
                stream,
                peer,
                local,
                admitted: guard.admit(peer.ip()).unwrap(),
                drain: CancellationToken::new(),
                proxy: None,
            })
            .await;
    });
    let mut client = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "{PRELUDE}\nf = plain()\ntry:\n    f.sock.settimeout(30)\n    r = f.sock.recv(100)\n    done(eof=r == b'')\nexcept OSError as e:\n    done(eof=True)\n"
        ))
        .env("FTP_PORT", addr.port().to_string())
        .env("FTP_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    fx.lines
        .wait_for("CONNECTED", |l| l["activity-type"] == "CONNECTED")
        .await;
    accepted.abort();
    let _ = accepted.await;
    let status = tokio::time::timeout(DEADLINE, client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    fx.lines
        .wait_for("DISCONNECTED", |l| l["activity-type"] == "DISCONNECTED")
        .await;
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_transfers_finish_and_dropping_serve_aborts_them() {
    // Cancelling the token: the running download completes, then serve returns.
    let mut fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let data = random_bytes(2 << 20);
    write_file(&fx.home("alice").join("slow.bin"), &data);
    let down = fx.scratch("slow.bin");
    let user = format!("alice:{PASSWORD}");
    let url = fx.url("slow.bin");
    let args = [
        "-sS",
        "--ssl-reqd",
        "-k",
        "--limit-rate",
        "1M",
        "-u",
        &user,
        "-o",
        down.to_str().unwrap(),
        &url,
    ];
    let download = run("curl", &args, &[]);
    let watch = async {
        fx.lines
            .wait_for("OPEN of slow.bin", |l| {
                l["activity-type"] == "OPEN" && l["mode"] == "READ"
            })
            .await;
        fx.shutdown.cancel();
        let server = fx.server.take().unwrap();
        tokio::time::timeout(DEADLINE, server)
            .await
            .unwrap()
            .unwrap();
    };
    let (out, ()) = tokio::join!(download, watch);
    out.ok();
    assert_eq!(std::fs::read(&down).unwrap(), data);
    assert_eq!(fx.lines.of("CLOSE").len(), 1);
    assert!(fx.lines.of("PARTIAL_CLOSE").is_empty());

    // Dropping serve: the running upload is aborted and leaves nothing.
    let mut fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let local = fx.scratch("up.bin");
    write_file(&local, &data);
    let user = format!("alice:{PASSWORD}");
    let url = fx.url("aborted.bin");
    let args = [
        "-sS",
        "--ssl-reqd",
        "-k",
        "--limit-rate",
        "512K",
        "-u",
        &user,
        "-T",
        local.to_str().unwrap(),
        &url,
    ];
    let upload = run("curl", &args, &[]);
    let abort = async {
        fx.lines
            .wait_for("OPEN of aborted.bin", |l| l["activity-type"] == "OPEN")
            .await;
        let server = fx.server.take().unwrap();
        server.abort();
        let _ = server.await;
    };
    let (out, ()) = tokio::join!(upload, abort);
    assert!(!out.status.success(), "{}", out.stderr);
    fx.lines
        .wait_for("PARTIAL_CLOSE", |l| l["activity-type"] == "PARTIAL_CLOSE")
        .await;
    assert!(!fx.home("alice").join("aborted.bin").exists());
    assert!(fx.lines.of("CLOSE").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_is_checked_and_pasv_announces_the_passive_address() {
    let fx = start(Mode::Ftp).await;
    let config = |ports: std::ops::RangeInclusive<u16>, address: Option<&str>| FtpConfig {
        tls: None,
        passive_ports: ports,
        passive_address: address.map(str::to_owned),
        idle_timeout: Duration::from_secs(60),
        banner: None,
    };
    let gateway = || fx.gateway.clone();
    assert!(FtpServer::new(config(0..=10, None), gateway()).is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 50010..=50000;
    assert!(FtpServer::new(config(reversed, None), gateway()).is_err());
    let error = FtpServer::new(config(50000..=50010, Some("::1")), gateway()).unwrap_err();
    assert!(error.contains("IPv6"), "{error}");
    let (cert, _) = self_signed_certificate(&[]).unwrap();
    let (_, other_key) = self_signed_certificate(&[]).unwrap();
    let mismatched = FtpConfig {
        tls: Some(TlsConfig::from_pem(&cert, &other_key).unwrap()),
        ..config(50000..=50010, None)
    };
    assert!(FtpServer::new(mismatched, gateway()).is_err());

    // An announced address, and a one-port range.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let passive = free.local_addr().unwrap().port();
    drop(free);
    let server = FtpServer::new(config(passive..=passive, Some("192.0.2.7")), gateway()).unwrap();
    assert!(!server.is_ftps());
    let shutdown = CancellationToken::new();
    let task = serve(server, listener, shutdown.clone(), None);
    let out = run(
        "python3",
        &[
            "-c",
            &format!(
                "{PRELUDE}\nf = plain()\ndone(welcome=f.getwelcome(), pasv=f.sendcmd('PASV'))"
            ),
        ],
        &[
            ("FTP_PORT", port.to_string()),
            ("FTP_PASSWORD", PASSWORD.to_owned()),
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(out["welcome"], "220 Service ready for new user.");
    let (hi, lo) = (passive >> 8, passive & 0xff);
    assert_eq!(
        out["pasv"],
        format!("227 Entering Passive Mode (192,0,2,7,{hi},{lo})")
    );
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_users_start_in_their_home_directory() {
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    write_file(&fx.home("dave").join("mine.txt"), b"dave's");
    let out = python(
        &fx,
        r#"
f = tls(user="dave")
pwd = f.pwd()
names = f.nlst()
mine = retr(f, "mine.txt").decode()
store(f, "STOR up.txt", io.BytesIO(b"up"))
f.cwd("/")
root_pwd = f.pwd()
f.quit()
done(pwd=pwd, names=names, mine=mine, root_pwd=root_pwd)
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["pwd"], "/default/dave", "{out}");
    assert_eq!(out["names"], json!(["mine.txt"]), "{out}");
    assert_eq!(out["mine"], "dave's", "{out}");
    // PATH users see real paths, as over SFTP.
    assert_eq!(out["root_pwd"], "/", "{out}");
    assert_eq!(
        std::fs::read(fx.home("dave").join("up.txt")).unwrap(),
        b"up"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_directories_list_whole() {
    // More entries than the old in-memory cap (100,000), and many listing
    // pages: every name arrives, in LIST, NLST and MLSD alike.
    const FILES: usize = 100_005;
    let fx = start(Mode::Ftps(Resumption::Enforced)).await;
    let dir = fx.home("alice").join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..FILES {
        std::fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    let out = python(
        &fx,
        r#"
f = tls()
names = f.nlst("many")
lines = []
f.retrlines("LIST many", lines.append)
facts = list(f.mlsd("many"))
f.quit()
done(names=len(names), distinct=len(set(names)), lines=len(lines), facts=len(facts),
     last=max(names))
"#,
    )
    .await
    .ok()
    .json();
    assert_eq!(out["names"], FILES, "{out}");
    assert_eq!(out["distinct"], FILES, "{out}");
    assert_eq!(out["lines"], FILES, "{out}");
    assert_eq!(out["facts"], FILES, "{out}");
    assert_eq!(out["last"], format!("f{:06}", FILES - 1), "{out}");
    assert!(
        fx.lines.of("ERROR").is_empty(),
        "{:?}",
        fx.lines.of("ERROR")
    );
    fx.stop().await;
}

/// One reply of a control connection (the last line of a multi-line one).
async fn reply(control: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(DEADLINE, control.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the control connection closed");
        if line.len() >= 4 && line.as_bytes()[3] == b' ' {
            return line.trim_end().to_owned();
        }
    }
}

async fn command(control: &mut tokio::io::BufReader<tokio::net::TcpStream>, line: &str) -> String {
    use tokio::io::AsyncWriteExt;
    control
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    reply(control).await
}

/// Whether the server closed `stream` without sending anything (EOF, or a
/// reset when it closed with bytes unread).
async fn closed_without_a_word(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("the connection stayed open"),
    }
}

/// Behind a load balancer with the PROXY protocol (raw sockets standing in
/// for it): the control connection's carried source is the client's
/// address, and each data connection carries its own header, whose source
/// must be that one: anything else is closed and the wait goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_data_connections_must_carry_the_control_connection_s_source() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = wharf_listen::ProxyProtocol::new(vec!["127.0.0.1/32".parse().unwrap()]).unwrap();
    let fx = start_with(Mode::Ftp, PASSIVE_PORTS, Some(proxy)).await;
    std::fs::create_dir_all(fx.home("alice")).unwrap();
    write_file(&fx.home("alice").join("hello.txt"), b"hello\n");

    let mut control = tokio::net::TcpStream::connect(fx.addr).await.unwrap();
    let header = |source: &str| format!("PROXY TCP4 {source} 127.0.0.1 40000 21\r\n");
    control
        .write_all(header("192.0.2.5").as_bytes())
        .await
        .unwrap();
    let mut control = tokio::io::BufReader::new(control);
    assert!(reply(&mut control).await.starts_with("220"));
    assert!(command(&mut control, "USER alice").await.starts_with("331"));
    let logged_in = command(&mut control, &format!("PASS {PASSWORD}")).await;
    assert!(logged_in.starts_with("230"), "{logged_in}");
    let connected = fx
        .lines
        .wait_for("CONNECTED", |l| l["activity-type"] == "CONNECTED")
        .await;
    assert_eq!(connected["source-ip"], "192.0.2.5");
    assert!(command(&mut control, "TYPE I").await.starts_with("200"));
    let epsv = command(&mut control, "EPSV").await;
    let port: u16 = epsv
        .split('|')
        .nth(3)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{epsv}"));
    let data_addr = SocketAddr::from(([127, 0, 0, 1], port));
    control
        .get_mut()
        .write_all(b"RETR hello.txt\r\n")
        .await
        .unwrap();

    // From an untrusted peer (127.0.0.2), even with the right header.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut untrusted = socket.connect(data_addr).await.unwrap();
    let _ = untrusted.write_all(header("192.0.2.5").as_bytes()).await;
    assert!(closed_without_a_word(&mut untrusted).await);
    // A header carrying another client, a LOCAL health check (the
    // balancer's own address is not the client's), and no header at all.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    for first in [
        header("192.0.2.6").into_bytes(),
        local,
        b"hello\r\n".to_vec(),
    ] {
        let mut other = tokio::net::TcpStream::connect(data_addr).await.unwrap();
        other.write_all(&first).await.unwrap();
        assert!(closed_without_a_word(&mut other).await);
    }
    // The untrusted peer and the missing header are counted as the
    // listeners count theirs (the metrics' refusals).
    let counters = &fx.gateway.guard().counters;
    assert_eq!(
        counters
            .refused_untrusted_proxy
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        counters
            .refused_proxy_header
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The client's own data connection, through the balancer.
    let mut data = tokio::net::TcpStream::connect(data_addr).await.unwrap();
    data.write_all(header("192.0.2.5").as_bytes())
        .await
        .unwrap();
    assert!(reply(&mut control).await.starts_with("150"));
    let mut body = Vec::new();
    tokio::time::timeout(DEADLINE, data.read_to_end(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, b"hello\n");
    assert!(reply(&mut control).await.starts_with("226"));
    assert!(command(&mut control, "QUIT").await.starts_with("221"));
    fx.stop().await;
}
