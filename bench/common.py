"""Shared pieces of the benchmark scripts: building and starting wharf, a
private sshd, free ports, timing the OpenSSH sftp client, RSS."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_wharf():
    """The release binary: $WHARF_BINARY if set (no build), else a build of
    this checkout into $CARGO_TARGET_DIR (default ROOT/target)."""
    if os.environ.get("WHARF_BINARY"):
        return os.environ["WHARF_BINARY"]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "wharf"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "release/wharf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return 0
    return 0


def descendants(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    for p in list(pids):
        pids += descendants(p)
    return pids


class Processes:
    """Processes started by a benchmark, stopped by PID at the end."""

    def __init__(self):
        self.procs = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def start_wharf(procs, binary, work, config_body, users=(), server=""):
    """Writes wharf.toml (config_body after a [server] section, which gets
    the `server` lines too), adds users
    (lists of `wharf user add` arguments, or (arguments, stdin) tuples),
    starts `serve` and returns
    (process, {"SFTP": port, "FTPS": port, ...})."""
    config = os.path.join(work, "wharf.toml")
    with open(config, "w") as f:
        f.write(f'[server]\ndata_dir = "{work}/wharf-data"\nhost_keys = ["{work}/hostkey"]\nidle_timeout = "1h"\n')
        f.write(server)
        f.write(config_body)
    for user in users:
        args, stdin = user if isinstance(user, tuple) else (user, "")
        subprocess.run([binary, "--config", config, "user", "add", *args], check=True,
                       stdout=subprocess.DEVNULL, input=stdin, text=True)
    proc = procs.add(subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    ports = {}
    for line in proc.stderr:
        line = line.strip()
        if " listening on " in line:
            name = line.split()[1]
            ports[name] = int(line.rsplit(":", 1)[1])
        if line == "wharf: ready":
            break
    return proc, ports


def start_sshd(procs, work, client_key, store):
    """A private sshd on a free loopback port serving internal-sftp rooted
    at `store` to root with `client_key`."""
    port = free_port()
    auth = os.path.join(work, "authorized_keys")
    shutil.copy(client_key + ".pub", auth)
    config = os.path.join(work, "sshd_config")
    with open(config, "w") as f:
        f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {work}/hostkey
PidFile {work}/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
AuthorizedKeysFile {auth}
Subsystem sftp internal-sftp -d {store}
""")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = procs.add(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=subprocess.PIPE, text=True))
    for line in proc.stderr:
        if "Server listening" in line:
            break
    return proc, port


def transfer_setup(work_root, size_mib):
    """What a transfer benchmark starts from: the release binary, a work
    directory under `work_root` with a client key and a host key, and a
    random source file of `size_mib` MiB. Returns (binary, work, key, src)."""
    print("building wharf (release)...", file=sys.stderr)
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-bench-", dir=work_root)
    key = keygen(os.path.join(work, "client"))
    keygen(os.path.join(work, "hostkey"))
    src = os.path.join(work, "src.bin")
    write_random(src, size_mib)
    return binary, work, key, src


def write_random(path, mib):
    """Writes `mib` MiB of incompressible data (one random MiB repeated)."""
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(mib):
            f.write(chunk)


def sftp(port, user, key, batch, cipher="aes128-gcm@openssh.com", extra=()):
    """Runs one `sftp -b -` session and returns its wall time in seconds."""
    cmd = ["sftp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-i", key, "-P", str(port),
           "-c", cipher, *extra, "-b", "-", f"{user}@127.0.0.1"]
    start = time.monotonic()
    subprocess.run(cmd, input=batch, text=True, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def percentile(values, p):
    values = sorted(values)
    index = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[index]


def sftp_password(port, user, password, batch, work):
    """Runs one `sftp -b -` session logging in with a password (given
    through SSH_ASKPASS, a script written in `work`; no key offered) and
    returns its wall time in seconds."""
    askpass = os.path.join(work, f"askpass-{abs(hash(password))}.sh")
    if not os.path.exists(askpass):
        with open(askpass, "w") as f:
            f.write(f"#!/bin/sh\necho '{password}'\n")
        os.chmod(askpass, 0o700)
    cmd = ["sftp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
           "-o", "PreferredAuthentications=password", "-P", str(port), "-b", "-", f"{user}@127.0.0.1"]
    start = time.monotonic()
    subprocess.run(cmd, input=batch, text=True, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "SSH_ASKPASS": askpass, "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": "x"})
    return time.monotonic() - start


def drain_stderr(proc, keep=50):
    """Reads a started process's stderr pipe in a thread for the rest of
    its life, so that its log never fills the pipe and blocks it; returns
    the list holding its last `keep` lines (for error messages)."""
    import collections
    import threading
    tail = collections.deque(maxlen=keep)

    def read():
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
    threading.Thread(target=read, daemon=True).start()
    return tail


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Stops one process by its PID (`sig`, then SIGKILL past `timeout`)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


LDAP_SUFFIX = "dc=example,dc=com"
LDAP_ADMIN_DN = "cn=admin,dc=example,dc=com"
LDAP_ADMIN_PASSWORD = "admin-secret"
OPENSSH_LPK_SCHEMA = """attributetype ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
\tDESC 'OpenSSH public key'
\tEQUALITY octetStringMatch
\tSYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY
\tDESC 'OpenSSH LPK objectclass'
\tMAY ( sshPublicKey $ uid ) )
"""


def start_slapd(procs, work):
    """A private OpenLDAP slapd (Debian's /usr/sbin/slapd, in the
    foreground) on a free loopback port, plain ldap:// only (no TLS): one
    mdb database with suffix LDAP_SUFFIX and root DN LDAP_ADMIN_DN, the
    core/cosine/nis/inetorgperson schemas plus openssh-lpk (sshPublicKey),
    the memberOf overlay; userPassword usable only to bind, everything
    else readable. The suffix entry is added. Like
    crates/wharf-test-support/src/ldap.rs, without TLS. Returns
    (process, "ldap://127.0.0.1:PORT")."""
    directory = os.path.join(work, "slapd")
    os.makedirs(os.path.join(directory, "db"))
    with open(os.path.join(directory, "openssh-lpk.schema"), "w") as f:
        f.write(OPENSSH_LPK_SCHEMA)
    config = os.path.join(directory, "slapd.conf")
    with open(config, "w") as f:
        f.write(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include {directory}/openssh-lpk.schema
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof

database mdb
maxsize 16777216
suffix "{LDAP_SUFFIX}"
rootdn "{LDAP_ADMIN_DN}"
rootpw {LDAP_ADMIN_PASSWORD}
directory {directory}/db
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
""")
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = open(os.path.join(directory, "slapd.log"), "w")
    proc = procs.add(subprocess.Popen(["/usr/sbin/slapd", "-h", url + "/", "-f", config, "-d", "0"],
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log))
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            with open(os.path.join(directory, "slapd.log")) as f:
                raise RuntimeError(f"slapd exited with {proc.returncode}: {f.read()}")
        if subprocess.run(["ldapwhoami", "-x", "-H", url], capture_output=True).returncode == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("slapd did not answer within 30 s")
        time.sleep(0.05)
    ldap_add(url, f"dn: {LDAP_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n")
    return proc, url


def ldap_add(url, ldif):
    """Adds entries (LDIF) as the root DN with ldapadd."""
    subprocess.run(["ldapadd", "-x", "-H", url, "-D", LDAP_ADMIN_DN, "-w", LDAP_ADMIN_PASSWORD],
                   input=ldif, text=True, check=True, stdout=subprocess.DEVNULL)


class Postgres:
    """A private PostgreSQL (the newest /usr/lib/postgresql/*/bin) in a
    fresh directory under `parent`: initdb with --no-sync, fsync,
    synchronous_commit and full_page_writes off, listening on 127.0.0.1 on
    a free port with its unix socket in that directory; superuser `wharf`
    with password `wharf-pw` over TCP (SCRAM), trust on the socket. As
    root it runs as the `postgres` system user through setpriv (the
    directory chowned to it), as crates/wharf-test-support/src/postgres.rs
    does. `stop()` is a fast shutdown (SIGINT) by PID."""

    USER = "wharf"
    PASSWORD = "wharf-pw"

    def __init__(self, parent):
        import glob
        import tempfile
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
        if not bins:
            raise RuntimeError("PostgreSQL not found under /usr/lib/postgresql/*/bin")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="wharf-bench-pg-", dir=parent)
        self.prefix = []
        if os.geteuid() == 0:
            import pwd
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.prefix = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups",
                           "--pdeathsig", "INT"]
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.PASSWORD + "\n")
        if self.prefix:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        self.data = os.path.join(self.dir, "data")
        subprocess.run([*self.prefix, os.path.join(self.bin, "initdb"), "-D", self.data, "--username", self.USER,
                        "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "--no-instructions",
                        "--encoding=UTF8", "--locale=C", f"--pwfile={pwfile}"],
                       cwd=self.dir, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.port = free_port()
        self.log = os.path.join(self.dir, "postgres.log")
        log = open(self.log, "w")
        if self.prefix:
            os.chown(self.log, account.pw_uid, account.pw_gid)
        self.proc = subprocess.Popen(
            [*self.prefix, os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=60",
             "-c", "logging_collector=off", "-c", "log_min_messages=warning"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None:
                with open(self.log) as f:
                    raise RuntimeError(f"postgres exited with {self.proc.returncode}: {f.read()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postgres was not ready within 60 s")
            time.sleep(0.05)

    def _ready(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) > 7 and lines[0].strip() == str(self.proc.pid) and lines[7].strip() == "ready"

    def url(self, database="postgres"):
        return f"postgres://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql, database="postgres"):
        """Runs SQL with psql over TCP as the superuser; returns its
        unaligned, tuples-only output."""
        return subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.USER, "-d", database],
            input=sql, text=True, check=True, capture_output=True,
            env={**os.environ, "PGPASSWORD": self.PASSWORD}).stdout

    def stop(self):
        stop_process(self.proc, signal.SIGINT, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
