"""Fixtures of the client compatibility suite (SPEC section 9).

One moto_server (the S3 API) and one `wharf serve` (SFTP and FTPS, a
filesystem store `fs` and an S3 store `s3`) for the whole run. Every cell of
the matrix (client x store x home type x login) has its own service-managed
user, all created with `wharf user add` before `wharf serve` starts. A second
`wharf serve` with `sftp_authentication_methods = "PUBLIC_KEY_AND_PASSWORD"`
is started only when a test asks for it.

Every process is started here, on 127.0.0.1 and free ports, and stopped by
its PID at the end (terminate, wait, kill).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cells import Cell  # noqa: E402
from support import Tree, build_tree, poll_until, run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
START_DEADLINE = 60.0
BUCKET = "wharf-clients"
# Every client prints and reads UTF-8 names the same way, whatever the
# environment that started the suite.
os.environ["LC_ALL"] = "C.UTF-8"
os.environ["LANG"] = "C.UTF-8"
PASSIVE_PORTS = 100
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cells(session) -> list[Cell]:
    seen = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("cell") if callspec else None
        if isinstance(cell, Cell):
            seen[cell.user] = cell
    return list(seen.values())


# --- processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(count: int) -> tuple[int, int]:
    """A run of `count` ports that all bind now, below Linux's ephemeral
    range (32768-60999) so that no client's outgoing connection takes one."""
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(20000, 32700 - count)
        ok = True
        for port in range(start, start + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return start, start + count - 1
    raise RuntimeError(f"no free range of {count} ports found")


def stop_process(proc: subprocess.Popen | None, grace: float = 15.0) -> None:
    """terminate, wait, kill: by this process's PID only."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


class Moto:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> "Moto":
        moto_server = VENV_BIN / "moto_server"
        if not moto_server.exists():
            moto_server = REPO / ".venv/bin/moto_server"
        log = open(self.workdir / "moto.log", "wb")
        # A port picked now may be taken before moto binds it: try again then.
        for _attempt in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [moto_server, "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            if poll_until("moto_server", self._ready_or_dead, timeout=START_DEADLINE) == "ready":
                break
        else:
            raise RuntimeError("moto_server did not start: " + (self.workdir / "moto.log").read_text()[-2000:])
        import boto3

        self.s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        self.s3.create_bucket(Bucket=BUCKET)
        return self

    def _ready_or_dead(self):
        if self.proc.poll() is not None:
            return "dead"
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as r:
                return "ready" if r.status == 200 else None
        except OSError:
            return None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


class Wharf:
    """One `wharf serve` in its own directory."""

    def __init__(self, binary: Path, workdir: Path, config: str):
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "wharf.toml"
        self.config.write_text(config)
        self.proc: subprocess.Popen | None = None
        self.sftp_port = 0
        self.ftps_port = 0
        self.audit_log = self.dir / "audit.log"
        self.stderr_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()

    def cli(self, *args: str, input: str | None = None, timeout: float = 60):
        return run([self.binary, "--config", self.config, *args], input=input, timeout=timeout, cwd=self.dir)

    def add_users(self, cells: list[Cell], public_key: Path) -> None:
        def add(cell: Cell):
            args = ["user", "add", cell.user, "--password-stdin", "--ssh-key", f"@{public_key}"]
            # SQLite allows one writer at a time: a busy store is retried.
            deadline = time.monotonic() + 60
            while True:
                try:
                    return self.cli(*args, *cell.user_add_args(), input=cell.password + "\n")
                except AssertionError as e:
                    if "locked" not in str(e).lower() and "busy" not in str(e).lower():
                        raise
                    if time.monotonic() > deadline:
                        raise

        if not cells:
            return
        # The first one creates the user store; the rest may go two at a time.
        add(cells[0])
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(add, cells[1:]))

    def start(self) -> "Wharf":
        out = open(self.audit_log, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "WHARF_LOG": os.environ.get("WHARF_LOG", "info")},
        )
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + START_DEADLINE
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None or left <= 0:
                self.stop()
                raise RuntimeError("wharf serve did not become ready:\n" + "\n".join(self.stderr_lines[-50:]))
            for proto in ("SFTP", "FTPS"):
                prefix = f"wharf: {proto} listening on "
                if line.startswith(prefix):
                    port = int(line[len(prefix):].strip().rsplit(":", 1)[1])
                    setattr(self, f"{proto.lower()}_port", port)
            if line.strip() == "wharf: ready":
                return self

    def _read_stderr(self) -> None:
        with open(self.dir / "stderr.log", "w") as copy:
            for raw in self.proc.stderr:
                line = ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\n"))
                self.stderr_lines.append(line)
                copy.write(line + "\n")
                copy.flush()
                self._lines.put(line)
        self._lines.put(None)

    def audit(self) -> list[dict]:
        lines = []
        for raw in self.audit_log.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                pass
        return lines

    def stop(self) -> None:
        stop_process(self.proc, grace=40)


@dataclass
class Keys:
    host_private: Path
    host_public_line: str  # "ssh-ed25519 AAAA..."
    host_sha256: str  # "SHA256:..." (OpenSSH/PuTTY fingerprint)
    client_private: Path
    client_public: Path
    client_ppk: Path  # the same key for PuTTY
    other_private: Path  # a key no user has (paramiko's key -> password fallback)


def make_keys(dir: Path) -> Keys:
    dir.mkdir(parents=True, exist_ok=True)
    for name in ("host_ed25519", "client_ed25519", "other_ed25519"):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", dir / name], timeout=30)
    run(["puttygen", dir / "client_ed25519", "-O", "private", "-o", dir / "client_ed25519.ppk"], timeout=30)
    host_public_line = " ".join((dir / "host_ed25519.pub").read_text().split()[:2])
    blob = base64.b64decode(host_public_line.split()[1])
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return Keys(
        host_private=dir / "host_ed25519",
        host_public_line=host_public_line,
        host_sha256=fingerprint,
        client_private=dir / "client_ed25519",
        client_public=dir / "client_ed25519.pub",
        client_ppk=dir / "client_ed25519.ppk",
        other_private=dir / "other_ed25519",
    )


def wharf_binary() -> Path:
    binary = Path(os.environ.get("WHARF_BIN") or REPO / "target/debug/wharf")
    if not binary.is_absolute():
        binary = REPO / binary
    if not binary.exists():
        pytest.exit(f"wharf binary {binary} not found: build it (cargo build -p wharf) or set WHARF_BIN", 2)
    return binary


def wharf_config(base: Path, keys: Keys, moto: Moto, ftps: bool, extra: str = "", ftps_extra: str = "") -> str:
    fs_root = base / "fs-root"
    fs_root.mkdir(parents=True, exist_ok=True)
    text = f"""[server]
data_dir = "data"
host_keys = ["{keys.host_private}"]

[protocols.sftp]
listen = "127.0.0.1:0"
"""
    if ftps:
        low, high = free_port_range(PASSIVE_PORTS)
        text += f"""
[protocols.ftps]
listen = "127.0.0.1:0"
passive_ports = "{low}-{high}"
{ftps_extra}
"""
    text += f"""
[storage.fs]
kind = "filesystem"
root = "{fs_root}"

[storage.s3]
kind = "s3"
bucket = "{BUCKET}"
endpoint = "{moto.endpoint}"
region = "us-east-1"
path_style = true
access_key_id = "test"
secret_access_key = "test"
{extra}
"""
    return text


# --- session fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="session")
def keys(base_dir) -> Keys:
    return make_keys(base_dir / "keys")


@pytest.fixture(scope="session")
def moto(base_dir):
    server = Moto(base_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def _start_wharf(request, base_dir, keys, moto, server: str, ftps: bool, extra: str = "", ftps_extra: str = ""):
    dir = base_dir / f"wharf-{server}"
    wharf = Wharf(wharf_binary(), dir, wharf_config(dir, keys, moto, ftps, extra, ftps_extra))
    cells = [c for c in _cells(request.session) if c.server == server]
    wharf.add_users(cells, keys.client_public)
    return wharf.start()


@pytest.fixture(scope="session")
def wharf(request, base_dir, keys, moto):
    server = None
    try:
        server = _start_wharf(request, base_dir, keys, moto, "main", ftps=True)
        yield server
    finally:
        if server:
            server.stop()


@pytest.fixture(scope="session")
def wharf_key_and_password(request, base_dir, keys, moto):
    """The second wharf, for the PUBLIC_KEY_AND_PASSWORD cells."""
    server = None
    try:
        server = _start_wharf(
            request,
            base_dir,
            keys,
            moto,
            "key-and-password",
            ftps=False,
            extra='\n[identity_provider]\nsftp_authentication_methods = "PUBLIC_KEY_AND_PASSWORD"\n',
        )
        yield server
    finally:
        if server:
            server.stop()


@pytest.fixture(scope="session")
def wharf_resumption_enabled(request, base_dir, keys, moto):
    """A third wharf, with `tls_session_resumption = "enabled"`: for FTPS
    clients that never resume a TLS session (Python's ftplib as is)."""
    server = None
    try:
        server = _start_wharf(
            request,
            base_dir,
            keys,
            moto,
            "resumption-enabled",
            ftps=True,
            ftps_extra='tls_session_resumption = "enabled"',
        )
        yield server
    finally:
        if server:
            server.stop()


@pytest.fixture(scope="session")
def trees(base_dir):
    """The two local trees: without and with the 20 MiB file."""
    return {
        False: build_tree(base_dir / "tree-small" / "tree", big=False),
        True: build_tree(base_dir / "tree-big" / "tree", big=True),
    }


@dataclass
class Env:
    """Everything a cell needs to drive its client."""

    cell: Cell
    wharf: Wharf
    keys: Keys
    moto: Moto
    work: Path  # this test's own directory
    tree: Tree
    stderr_mark: int
    audit_mark: int

    @property
    def user(self) -> str:
        return self.cell.user

    @property
    def password(self) -> str:
        return self.cell.password

    @property
    def sftp_port(self) -> int:
        return self.wharf.sftp_port

    @property
    def ftps_port(self) -> int:
        return self.wharf.ftps_port

    def known_hosts(self) -> Path:
        """An OpenSSH known_hosts file holding the server's host key."""
        path = self.work / "known_hosts"
        if not path.exists():
            path.write_text(f"[127.0.0.1]:{self.sftp_port} {self.keys.host_public_line}\n")
        return path

    def remote_abs(self, rel: str) -> str:
        """A path relative to the start directory, made absolute."""
        base = self.cell.start_dir.rstrip("/")
        return f"{base}/{rel}" if rel else (base or "/")


@pytest.fixture
def env(request, cell, keys, moto, trees, tmp_path) -> Env:
    fixture = {
        "main": "wharf",
        "key-and-password": "wharf_key_and_password",
        "resumption-enabled": "wharf_resumption_enabled",
    }[cell.server]
    server = request.getfixturevalue(fixture)
    work = tmp_path / "work"
    work.mkdir()
    return Env(
        cell=cell,
        wharf=server,
        keys=keys,
        moto=moto,
        work=work,
        tree=trees[cell.big],
        stderr_mark=len(server.stderr_lines),
        audit_mark=len(server.audit()),
    )


# --- reporting ----------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    env = item.funcargs.get("env") if hasattr(item, "funcargs") else None
    if not isinstance(env, Env):
        return
    stderr = env.wharf.stderr_lines[env.stderr_mark:]
    interesting = [
        line
        for line in stderr
        if "ERROR" in line or " WARN wharf" in line or line.startswith("wharf:")
    ]
    if interesting:
        title = "wharf stderr during the test (ERROR, and WARN from wharf)"
        report.sections.append((title, "\n".join(interesting[-40:])))
    audit = [
        line
        for line in env.wharf.audit()[env.audit_mark:]
        if line.get("user") in (None, env.user)
        and line.get("activity-type") in ("ERROR", "ACCESS_DENIED", "AUTH_FAILURE", "PARTIAL_CLOSE")
    ]
    if audit:
        lines = "\n".join(json.dumps(line, ensure_ascii=False) for line in audit[-30:])
        report.sections.append(("wharf audit log: failures during the test", lines))


def _version(argv, pick=lambda text: text.strip().splitlines()[0]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return pick((p.stdout or "") + (p.stderr or ""))
    except (OSError, subprocess.TimeoutExpired, IndexError) as e:
        return f"unavailable ({e})"


def client_versions() -> dict[str, str]:
    def php_ssh2(text: str) -> str:
        return text.strip()

    import ssl

    out = {
        "wharf": _version([wharf_binary(), "--version"]),
        "OpenSSH sftp/scp": _version(["ssh", "-V"]),
        "PuTTY psftp": _version(["psftp", "-V"]),
        "PuTTY pscp": _version(["pscp", "-V"]),
        "curl": _version(["curl", "--version"]),
        "rclone": _version(["rclone", "version"]),
        "lftp": _version(["lftp", "--version"]),
        "PHP + ssh2": _version(
            [
                "php",
                "-r",
                'echo "PHP ", PHP_VERSION, ", ssh2 ", phpversion("ssh2") ?: "missing", ", ";'
                '$i = new ReflectionExtension("ssh2"); ob_start(); $i->info(); $t = ob_get_clean();'
                'preg_match("/libssh2 version => (\\S+)/", $t, $m); echo "libssh2 ", $m[1] ?? "?";',
            ],
            php_ssh2,
        ),
    }
    for module in ("paramiko", "asyncssh"):
        try:
            out[module] = __import__(module).__version__
        except Exception as e:  # noqa: BLE001
            out[module] = f"unavailable ({e})"
    out["Python ftplib"] = f"Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}"
    out["moto"] = _version([sys.executable, "-c", "import moto; print(moto.__version__)"])
    return out


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.section("client versions")
    for name, version in client_versions().items():
        terminalreporter.write_line(f"{name}: {version}")
