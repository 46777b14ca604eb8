//! A real OpenLDAP server for tests: `slapd` from Debian's `slapd` package
//! (`scripts/setup-test-env` installs it), started in the foreground with a
//! configuration of its own in a temporary directory:
//!
//! * one mdb database, suffix [`SUFFIX`], root DN [`ADMIN_DN`] /
//!   [`ADMIN_PASSWORD`] (the suffix entry is created at the first start);
//! * the core, cosine, nis (`posixAccount`), inetorgperson schemas and the
//!   openssh-lpk schema (`ldapPublicKey` / `sshPublicKey`), which Debian
//!   does not ship and is written here;
//! * the memberOf overlay (`groupOfNames` / `member` -> `memberOf`, direct
//!   memberships only, as in production) and refint;
//! * ACLs: `userPassword` is only usable to bind (and by its owner), then
//!   the test's own rules ([`Slapd::start_with_access`]), then everything
//!   is readable by everyone, bound or not;
//! * `ldap://127.0.0.1:PORT` (StartTLS offered) and `ldaps://127.0.0.1:PORT`
//!   with a server certificate (SAN `IP:127.0.0.1`, `DNS:localhost`) made
//!   at start by `openssl` and signed by a test CA ([`Slapd::ca_file`]).
//!
//! Ports are free ones picked at start; readiness is polled (an LDAP bind
//! on the plain port) with a deadline, never slept on. The server is
//! stopped by PID when the [`Slapd`] is dropped; [`Slapd::stop`] and
//! [`Slapd::restart`] let a test take the directory away and bring it
//! back on the same ports with the same data.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=com";
/// The root DN, which may do anything.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// How long slapd may take to answer its first bind.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long slapd may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

const SLAPD: &str = "/usr/sbin/slapd";

/// The openssh-lpk schema (as the openssh-lpk patch and sssd document it).
const OPENSSH_LPK_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
\tDESC 'OpenSSH public key'
\tEQUALITY octetStringMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY
\tDESC 'OpenSSH LPK objectclass'
\tMAY ( sshPublicKey $ uid ) )
";

/// A running slapd.
/// The LDIF entry of a directory user `uid` under `ou` (e.g. `ou=people`)
/// of [`SUFFIX`]: inetOrgPerson, posixAccount (`uidNumber` `number`, home
/// `/default/UID`) and ldapPublicKey (`keys` as `sshPublicKey`), password
/// `UID-Pass-1`, plus the `extra` attributes; ends with a blank line, so
/// entries can be concatenated.
pub fn person(uid: &str, ou: &str, number: u32, keys: &[&str], extra: &[(&str, &str)]) -> String {
    let mut ldif = format!(
        "dn: uid={uid},{ou},{SUFFIX}\n\
         objectClass: inetOrgPerson\n\
         objectClass: posixAccount\n\
         objectClass: ldapPublicKey\n\
         uid: {uid}\ncn: {uid}\nsn: {uid}\n\
         uidNumber: {number}\ngidNumber: 100\n\
         homeDirectory: /default/{uid}\n\
         userPassword: {uid}-Pass-1\n"
    );
    for (attribute, value) in extra {
        ldif.push_str(&format!("{attribute}: {value}\n"));
    }
    for key in keys {
        ldif.push_str(&format!("sshPublicKey: {key}\n"));
    }
    ldif.push('\n');
    ldif
}

pub struct Slapd {
    child: Option<Child>,
    ldap_port: u16,
    ldaps_port: u16,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd")
            .field("ldap", &self.ldap_url())
            .field("ldaps", &self.ldaps_url())
            .field("running", &self.child.is_some())
            .finish()
    }
}

fn require_slapd() -> PathBuf {
    let path = PathBuf::from(SLAPD);
    assert!(
        path.is_file(),
        "{SLAPD} not found: run scripts/setup-test-env to install slapd and ldap-utils"
    );
    path
}

/// Two distinct free ports (both held while picked).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("cannot find a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA and a server certificate it signed, in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = crate::tools::require("openssl");
    let key = |name: &str| dir.join(name).to_string_lossy().into_owned();
    run(
        Command::new(&openssl).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key("ca.key"),
            "-out",
            &key("ca.crt"),
            "-subj",
            "/CN=wharf test LDAP CA",
            "-days",
            "7",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]),
        "openssl req (CA)",
    );
    run(
        Command::new(&openssl).args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key("server.key"),
            "-out",
            &key("server.csr"),
            "-subj",
            "/CN=localhost",
        ]),
        "openssl req (server)",
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    run(
        Command::new(&openssl).args([
            "x509",
            "-req",
            "-in",
            &key("server.csr"),
            "-CA",
            &key("ca.crt"),
            "-CAkey",
            &key("ca.key"),
            "-CAcreateserial",
            "-out",
            &key("server.crt"),
            "-days",
            "7",
            "-extfile",
            &key("server.ext"),
        ]),
        "openssl x509 (server)",
    );
}

fn write_config(dir: &Path, access: &[&str]) {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(dir.join("openssh-lpk.schema"), OPENSSH_LPK_SCHEMA).expect("write schema");
    std::fs::create_dir_all(dir.join("db")).expect("create db directory");
    let config = format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include {schema}
pidfile {pid}
argsfile {args}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 16777216
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PASSWORD}
directory {db}
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member
access to attrs=userPassword by self write by anonymous auth by * none
{access}
access to * by * read
",
        access = access.join("\n"),
        schema = path("openssh-lpk.schema"),
        pid = path("slapd.pid"),
        args = path("slapd.args"),
        ca = path("ca.crt"),
        cert = path("server.crt"),
        key = path("server.key"),
        db = path("db"),
    );
    std::fs::write(dir.join("slapd.conf"), config).expect("write slapd.conf");
}

/// An anonymous LDAPv3 simple bind over plain TCP: whether slapd answers
/// it with success.
fn answers_bind(port: u16) -> bool {
    const BIND: [u8; 14] = [
        0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
    ];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(&BIND).is_err() {
        return false;
    }
    let mut answer = [0u8; 14];
    if stream.read_exact(&mut answer).is_err() {
        return false;
    }
    // BindResponse ([APPLICATION 1]) with resultCode success (ENUMERATED 0).
    answer[5] == 0x61 && answer[7..10] == [0x0a, 0x01, 0x00]
}

/// Runs slapd in the foreground on the given ports and waits until it
/// answers a bind.
fn launch(dir: &Path, ldap_port: u16, ldaps_port: u16) -> Result<Child, String> {
    let log_path = dir.join("slapd.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let listen = format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/");
    let mut child = Command::new(SLAPD)
        .arg("-f")
        .arg(dir.join("slapd.conf"))
        .args(["-h", &listen, "-d", "0"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {SLAPD}: {e}"))?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("slapd exited with {status}: {log}"));
        }
        if answers_bind(ldap_port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("slapd did not answer within {START_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Slapd {
    /// Starts a new directory holding only the suffix entry.
    pub fn start() -> Slapd {
        Slapd::start_with_access(&[])
    }

    /// [`Slapd::start`] with more `access to ...` rules (slapd.conf lines),
    /// which come after the `userPassword` rule and before the final
    /// `access to * by * read`.
    pub fn start_with_access(access: &[&str]) -> Slapd {
        require_slapd();
        let dir = tempfile::Builder::new()
            .prefix("wharf-slapd-")
            .tempdir()
            .expect("create a temporary directory");
        make_certificates(dir.path());
        write_config(dir.path(), access);
        let mut last_error = String::new();
        // A port picked as free may be taken before slapd binds it: a few
        // tries with new ports.
        for _ in 0..5 {
            let (ldap_port, ldaps_port) = free_ports();
            match launch(dir.path(), ldap_port, ldaps_port) {
                Ok(child) => {
                    let slapd = Slapd {
                        child: Some(child),
                        ldap_port,
                        ldaps_port,
                        dir,
                    };
                    slapd.add(&format!(
                        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\n\
                         dc: example\no: Example\n"
                    ));
                    return slapd;
                }
                Err(error) => last_error = error,
            }
        }
        panic!("slapd did not start: {last_error}");
    }

    /// `ldap://127.0.0.1:PORT` (StartTLS is offered there).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The PEM certificate of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Adds entries (LDIF) as the root DN with `ldapadd`; panics on failure.
    pub fn add(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    /// Applies changes (LDIF with `changetype`) as the root DN with
    /// `ldapmodify`; panics on failure.
    pub fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        let program = crate::tools::require(tool);
        let file = self.dir.path().join("input.ldif");
        std::fs::write(&file, ldif).expect("write LDIF");
        run(
            Command::new(program)
                .args([
                    "-x",
                    "-H",
                    &self.ldap_url(),
                    "-D",
                    ADMIN_DN,
                    "-w",
                    ADMIN_PASSWORD,
                ])
                .arg("-f")
                .arg(&file),
            tool,
        );
    }

    /// Stops the server (SIGTERM, then SIGKILL past a deadline) and waits
    /// for it; its ports then refuse connections.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Starts the server again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        match launch(self.dir.path(), self.ldap_port, self.ldaps_port) {
            Ok(child) => self.child = Some(child),
            Err(error) => panic!("slapd did not start again: {error}"),
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
