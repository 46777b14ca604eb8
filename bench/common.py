"""Shared pieces of the benchmark scripts: building and starting wharf, a
private sshd, free ports, timing the OpenSSH sftp client, RSS."""

import os
import shutil
import signal
import socket
import subprocess
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


def start_wharf(procs, binary, work, config_body, users=()):
    """Writes wharf.toml (config_body after a [server] section), adds users
    (lists of `wharf user add` arguments, or (arguments, stdin) tuples),
    starts `serve` and returns
    (process, {"SFTP": port, "FTPS": port, ...})."""
    config = os.path.join(work, "wharf.toml")
    with open(config, "w") as f:
        f.write(f'[server]\ndata_dir = "{work}/wharf-data"\nhost_keys = ["{work}/hostkey"]\nidle_timeout = "1h"\n')
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
