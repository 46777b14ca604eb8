#!/usr/bin/env python3
"""One SFTP transfer through HAProxy against the same transfer direct, side by side.

Starts two release wharf processes with the same configuration (filesystem
store on tmpfs), one with `proxy_protocol = true` behind a private HAProxy
(`mode tcp`, `send-proxy-v2`, as docs/deploy.md configures it) and one
listening directly; and, as the reference for what the balancer itself
costs, OpenSSH's internal-sftp direct and through the same HAProxy (without
a header: sshd does not read one). With the same OpenSSH `sftp` client and
cipher, each upload and download (1 GiB by default) runs on all four paths,
alternating which goes first, then login + `ls` latency on each.

Usage: bench/through_haproxy.py [--size-mib 1024] [--runs 3] [--logins 20]
Needs: cargo, sftp, ssh-keygen, /usr/sbin/sshd, haproxy (scripts/setup-test-env installs them).
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

from common import Processes, free_port, sftp, start_sshd, start_wharf, transfer_setup


def start_haproxy(procs, work, routes):
    """A private HAProxy in the foreground: one TCP frontend per (server
    port, send_header) route, on a free port each. Returns the ports."""
    fronts = [free_port() for _ in routes]
    config = os.path.join(work, "haproxy.cfg")
    with open(config, "w") as f:
        f.write("global\n    maxconn 1000\n"
                "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n")
        for i, ((server, header), front) in enumerate(zip(routes, fronts)):
            proxy = " send-proxy-v2" if header else ""
            f.write(f"frontend f{i}\n    bind 127.0.0.1:{front}\n    default_backend b{i}\n"
                    f"backend b{i}\n    server s{i} 127.0.0.1:{server}{proxy}\n")
    procs.add(subprocess.Popen(["haproxy", "-db", "-f", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL))
    # Ready once every frontend accepts (a probe to a frontend reaches the
    # server as a connection that closes at once: harmless here).
    deadline = time.monotonic() + 20
    for front in fronts:
        while True:
            try:
                socket.create_connection(("127.0.0.1", front), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("haproxy did not start")
                time.sleep(0.05)
    return fronts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cipher", default="aes128-gcm@openssh.com")
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--work", default="/dev/shm")
    args = parser.parse_args()

    binary, work, key, src = transfer_setup(args.work, args.size_mib)
    size = args.size_mib << 20
    procs = Processes()
    with open(key + ".pub") as f:
        public = f.read().strip()
    try:
        wharf_ports = {}
        for name, server in [("direct", ""), ("proxied", 'proxy_protocol = true\nproxy_trusted = ["127.0.0.1/32"]\n')]:
            dir = os.path.join(work, name)
            os.makedirs(dir)
            os.symlink(os.path.join(work, "hostkey"), os.path.join(dir, "hostkey"))
            _, ports = start_wharf(
                procs, binary, dir,
                f'[protocols.sftp]\nlisten = "127.0.0.1:0"\n[storage.bench]\nkind = "filesystem"\n'
                f'root = "{dir}/store"\n',
                users=[["bench", "--ssh-key", public, "--home-directory-mapping", "/=/bench"]],
                server=server,
            )
            wharf_ports[name] = ports["SFTP"]
        ssh_store = os.path.join(work, "ssh-store")
        os.makedirs(ssh_store)
        _, sshd_port = start_sshd(procs, work, key, ssh_store)
        wharf_front, sshd_front = start_haproxy(procs, work, [(wharf_ports["proxied"], True), (sshd_port, False)])
        paths = {
            "wharf direct": (wharf_ports["direct"], "bench", "/"),
            "wharf haproxy": (wharf_front, "bench", "/"),
            "openssh direct": (sshd_port, "root", ssh_store + "/"),
            "openssh haproxy": (sshd_front, "root", ssh_store + "/"),
        }
        names = list(paths)
        results = {}
        for run in range(args.runs):
            order = names if run % 2 == 0 else names[::-1]
            for name in order:
                port, user, base = paths[name]
                up = sftp(port, user, key, f"put {src} {base}up.bin\n", args.cipher)
                down = sftp(port, user, key, f"get {base}up.bin /dev/null\n", args.cipher)
                results.setdefault((name, "up"), []).append(size / up / 1e6)
                results.setdefault((name, "down"), []).append(size / down / 1e6)
                print(f"  {name} run {run + 1}: up {size / up / 1e6:.0f} MB/s, down {size / down / 1e6:.0f} MB/s",
                      file=sys.stderr)
        latency = {}
        for name, (port, user, base) in paths.items():
            times = [sftp(port, user, key, f"ls {base}\n", args.cipher) for _ in range(args.logins)]
            latency[name] = statistics.median(times) * 1000
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nSFTP through HAProxy {subprocess.run(['haproxy', '-v'], capture_output=True, text=True).stdout.split()[2]}"
          f" (mode tcp; send-proxy-v2 to wharf) against direct, {args.size_mib} MiB on tmpfs, {args.cipher},"
          f" median of {args.runs} (MB/s = 1e6 B/s)")
    print(f"{'server':8} {'dir':5} {'direct':>8} {'haproxy':>8} {'ratio':>6}")
    for server in ["wharf", "openssh"]:
        for direction in ["up", "down"]:
            d = statistics.median(results[(f"{server} direct", direction)])
            h = statistics.median(results[(f"{server} haproxy", direction)])
            print(f"{server:8} {direction:5} {d:8.0f} {h:8.0f} {h / d:6.2f}")
    print(f"\nlogin + ls, median of {args.logins} (ms):")
    for server in ["wharf", "openssh"]:
        d, h = latency[f"{server} direct"], latency[f"{server} haproxy"]
        print(f"{server:8} direct {d:5.0f}  haproxy {h:5.0f}  (+{h - d:.0f} ms)")


if __name__ == "__main__":
    main()
