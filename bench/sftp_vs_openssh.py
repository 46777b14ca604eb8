#!/usr/bin/env python3
"""wharf against OpenSSH's sftp-server, side by side, same client and cipher.

Starts a release wharf (filesystem store on tmpfs) and a private sshd on a
free loopback port (`Subsystem sftp internal-sftp`), then with the same
OpenSSH `sftp` client:
  - measures the RSS an idle SFTP session costs each server (first, on
    fresh processes);
  - uploads and downloads a file (1 GiB by default) per cipher, alternating
    which server goes first, and prints MB/s medians and wharf/OpenSSH ratios;
  - measures login + `ls` latency (median of N).

Usage: bench/sftp_vs_openssh.py [--size-mib 1024] [--runs 3] [--buffer 261120]
Needs: cargo, sftp, ssh-keygen, /usr/sbin/sshd (scripts/setup-test-env installs them).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys

from common import Processes, descendants, rss_kib, sftp, start_sshd, start_wharf, transfer_setup


def idle_rss(server_pid, port, user, key, sessions, with_children):
    """RSS added by `sessions` idle SFTP sessions, per session, in KiB."""

    def total():
        pids = [server_pid] + (descendants(server_pid) if with_children else [])
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

    binary, work, key, src = transfer_setup(args.work, args.size_mib)
    size = args.size_mib << 20
    procs = Processes()
    try:
        store = os.path.join(work, "wharf-store")
        with open(key + ".pub") as f:
            public = f.read().strip()
        wharf_proc, ports = start_wharf(
            procs, binary, work,
            f'[protocols.sftp]\nlisten = "127.0.0.1:0"\n[storage.bench]\nkind = "filesystem"\nroot = "{store}"\n',
            users=[["bench", "--ssh-key", public, "--home-directory-mapping", "/=/bench"]],
        )
        ssh_store = os.path.join(work, "ssh-store")
        os.makedirs(ssh_store)
        sshd_proc, sshd_port = start_sshd(procs, work, key, ssh_store)
        targets = {"wharf": (ports["SFTP"], "bench", "/"), "openssh": (sshd_port, "root", ssh_store + "/")}
        # Idle sessions first, on fresh processes (after transfers the
        # allocator keeps freed buffers, which would hide the cost).
        idle = {
            "wharf": idle_rss(wharf_proc.pid, ports["SFTP"], "bench", key, args.idle_sessions, False),
            "openssh": idle_rss(sshd_proc.pid, sshd_port, "root", key, args.idle_sessions, True),
        }
        extra = []
        if args.buffer:
            extra += ["-B", args.buffer]
        if args.requests:
            extra += ["-R", args.requests]
        results = {}
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
            times = [sftp(port, user, key, f"ls {base}\n") for _ in range(args.logins)]
            latency[name] = statistics.median(times) * 1000
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)

    flags = " ".join(f for f in [f"-B {args.buffer}" if args.buffer else "", f"-R {args.requests}" if args.requests else ""] if f)
    print(f"\nSFTP, {args.size_mib} MiB, files on tmpfs, OpenSSH sftp client {flags or '(default -B 32768 -R 64)'}, "
          f"median of {args.runs} (MB/s = 1e6 B/s)")
    print(f"{'cipher':32} {'dir':5} {'wharf':>8} {'openssh':>8} {'ratio':>6}")
    for cipher in args.ciphers:
        for direction in ["up", "down"]:
            w = statistics.median(results[(cipher, "wharf", direction)])
            o = statistics.median(results[(cipher, "openssh", direction)])
            print(f"{cipher:32} {direction:5} {w:8.0f} {o:8.0f} {w / o:6.2f}")
    print(f"\nlogin + ls, median of {args.logins}: wharf {latency['wharf']:.0f} ms, "
          f"openssh {latency['openssh']:.0f} ms ({latency['openssh'] / latency['wharf']:.1f}x)")
    print(f"idle SFTP session RSS (mean of {args.idle_sessions}): wharf {idle['wharf']:.0f} KiB, "
          f"openssh {idle['openssh']:.0f} KiB (its per-session processes)")


if __name__ == "__main__":
    main()
