#!/usr/bin/env python3
"""wharf against OpenSSH's sftp-server, side by side, same client and cipher.

Starts a release wharf (filesystem store on tmpfs) and a private sshd on a
free loopback port (`Subsystem sftp internal-sftp`), then with the same
OpenSSH `sftp` client:
  - uploads and downloads a file (1 GiB by default) per cipher, alternating
    which server goes first, and prints MB/s medians and wharf/OpenSSH ratios;
  - measures login + `ls` latency (median of N);
  - measures the RSS an idle SFTP session costs each server.

Usage: bench/sftp_vs_openssh.py [--size-mib 1024] [--runs 3] [--ciphers ...]
Needs: cargo, sftp, ssh-keygen, /usr/sbin/sshd (scripts/setup-test-env installs them).
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return 0
    return 0


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    for p in list(pids):
        pids += children(p)
    return pids


class Servers:
    def __init__(self, work, key):
        self.work = work
        self.key = key
        self.procs = []

    def start_wharf(self, binary):
        store = os.path.join(self.work, "wharf-store")
        os.makedirs(store, exist_ok=True)
        port = free_port()
        config = os.path.join(self.work, "wharf.toml")
        with open(config, "w") as f:
            f.write(f"""[server]
data_dir = "{self.work}/wharf-data"
host_keys = ["{self.work}/hostkey"]
idle_timeout = "1h"
[protocols.sftp]
listen = "127.0.0.1:{port}"
[storage.bench]
kind = "filesystem"
root = "{store}"
""")
        with open(self.key + ".pub") as f:
            public = f.read().strip()
        subprocess.run([binary, "--config", config, "user", "add", "bench", "--ssh-key", public,
                        "--home-directory-mapping", "/=/bench"], check=True, stdout=subprocess.DEVNULL)
        log = open(os.path.join(self.work, "wharf.log"), "w")
        proc = subprocess.Popen([binary, "serve", "--config", config], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            log.write(line)
            if line.strip() == "wharf: ready":
                break
        self.procs.append(proc)
        self.wharf = (proc, port, store)

    def start_sshd(self):
        store = os.path.join(self.work, "ssh-store")
        os.makedirs(store, exist_ok=True)
        port = free_port()
        auth = os.path.join(self.work, "authorized_keys")
        shutil.copy(self.key + ".pub", auth)
        config = os.path.join(self.work, "sshd_config")
        with open(config, "w") as f:
            f.write(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {self.work}/hostkey
PidFile {self.work}/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin yes
PasswordAuthentication no
AuthorizedKeysFile {auth}
Subsystem sftp internal-sftp -d {store}
""")
        os.makedirs("/run/sshd", exist_ok=True)
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if "Server listening" in line:
                break
        self.procs.append(proc)
        self.sshd = (proc, port, store)

    def stop(self):
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def sftp(port, user, key, batch, cipher, extra=()):
    cmd = ["sftp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-i", key, "-P", str(port),
           "-c", cipher, *extra, "-b", "-", f"{user}@127.0.0.1"]
    start = time.monotonic()
    subprocess.run(cmd, input=batch, text=True, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def idle_rss(server_pid, port, user, key, sessions, all_processes):
    """RSS added by `sessions` idle SFTP sessions, per session, in KiB."""
    def total():
        pids = [server_pid] + (children(server_pid) if all_processes else [])
        return sum(rss_kib(p) for p in pids)
    before = total()
    clients = []
    for _ in range(sessions):
        p = subprocess.Popen(["sftp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                              "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-i", key, "-P", str(port),
                              f"{user}@127.0.0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        p.stdin.write("pwd\n")
        p.stdin.flush()
        p.stdout.readline()  # the pwd answer: the session is up
        clients.append(p)
    after = total()
    for p in clients:
        p.stdin.close()
        p.wait()
    return (after - before) / sessions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ciphers", nargs="+", default=["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
    parser.add_argument("--buffer", default=None, help="sftp -B request size (default: the client's 32768)")
    parser.add_argument("--requests", default=None, help="sftp -R requests in flight (default 64)")
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--idle-sessions", type=int, default=50)
    parser.add_argument("--work", default="/dev/shm")
    args = parser.parse_args()

    print("building wharf (release)...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "wharf"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target/release/wharf")
    work = tempfile.mkdtemp(prefix="wharf-bench-", dir=args.work)
    key = os.path.join(work, "client")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(work, "hostkey")], check=True)
    src = os.path.join(work, "src.bin")
    with open(src, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(args.size_mib):
            f.write(chunk)
    size = args.size_mib << 20
    servers = Servers(work, key)
    servers.start_wharf(binary)
    servers.start_sshd()
    wharf_proc, wharf_port, _ = servers.wharf
    sshd_proc, sshd_port, sshd_store = servers.sshd
    targets = {
        "wharf": (wharf_port, "bench", "/"),
        "openssh": (sshd_port, "root", sshd_store + "/"),
    }
    extra = []
    if args.buffer:
        extra += ["-B", args.buffer]
    if args.requests:
        extra += ["-R", args.requests]
    results = {}
    try:
        # Idle sessions first, on fresh processes (after transfers the
        # allocator keeps freed buffers, which would hide the cost).
        idle = {
            "wharf": idle_rss(wharf_proc.pid, wharf_port, "bench", key, args.idle_sessions, False),
            "openssh": idle_rss(sshd_proc.pid, sshd_port, "root", key, args.idle_sessions, True),
        }
        for cipher in args.ciphers:
            for run in range(args.runs):
                order = ["wharf", "openssh"] if run % 2 == 0 else ["openssh", "wharf"]
                for name in order:
                    port, user, base = targets[name]
                    up = sftp(port, user, key, f"put {src} {base}up.bin\n", cipher, extra)
                    down = sftp(port, user, key, f"get {base}up.bin /dev/null\n", cipher, extra)
                    results.setdefault((cipher, name, "up"), []).append(size / up / 1e6)
                    results.setdefault((cipher, name, "down"), []).append(size / down / 1e6)
                    print(f"  {cipher} {name} run {run + 1}: up {size / up / 1e6:.0f} MB/s, down {size / down / 1e6:.0f} MB/s",
                          file=sys.stderr)
        latency = {}
        for name, (port, user, base) in targets.items():
            times = [sftp(port, user, key, f"ls {base}\n", "aes128-gcm@openssh.com") for _ in range(args.logins)]
            latency[name] = statistics.median(times) * 1000
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)

    mib = args.size_mib
    print(f"\nSFTP, {mib} MiB, files on tmpfs, OpenSSH sftp client {'-B ' + args.buffer if args.buffer else ''}"
          f"{' -R ' + args.requests if args.requests else ''}, median of {args.runs} (MB/s = 1e6 B/s)")
    print(f"{'cipher':32} {'dir':5} {'wharf':>8} {'openssh':>8} {'ratio':>6}")
    for cipher in args.ciphers:
        for direction in ["up", "down"]:
            w = statistics.median(results[(cipher, "wharf", direction)])
            o = statistics.median(results[(cipher, "openssh", direction)])
            print(f"{cipher:32} {direction:5} {w:8.0f} {o:8.0f} {w / o:6.2f}")
    print(f"\nlogin + ls, median of {args.logins}: wharf {latency['wharf']:.0f} ms, "
          f"openssh {latency['openssh']:.0f} ms, ratio {latency['openssh'] / latency['wharf']:.2f}x faster")
    print(f"idle SFTP session RSS (mean of {args.idle_sessions}): wharf {idle['wharf']:.0f} KiB, "
          f"openssh {idle['openssh']:.0f} KiB (its per-session processes)")


if __name__ == "__main__":
    main()
