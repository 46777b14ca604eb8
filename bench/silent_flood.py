#!/usr/bin/env python3
"""A legitimate login while 10,000 connections sit silent, wharf against
OpenSSH's sshd (default MaxStartups 10:30:100, LoginGraceTime 120).

For each server: 20 sequential `sftp -b` logins + `ls` from 127.0.0.1 with
no flood (the baseline), then with FLOOD silent TCP connections held open
(never sending a byte), in two shapes:

  one-address   all from 127.0.1.1 (one attacking host)
  spread        32 per address from 127.1.0.0/16 (a botnet: every address
                stays within wharf's per-address cap)

A login that fails (the server dropped it) is retried, at most 10 times;
the time reported is until the login succeeded, so drops show up as time
and as a count. Also wharf's RSS with the flood held.

Then, for wharf only, the password storm: 128 concurrent wrong passwords
over plain FTP (unknown users, from 4 addresses) while one real FTP login
is timed from another, with wharf's peak RSS (VmHWM) before and after.

Usage: bench/silent_flood.py [--flood 10000] [--logins 20]
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

from common import (Processes, build_wharf, keygen, percentile, rss_kib, start_sshd, start_wharf)

HERE = os.path.dirname(os.path.abspath(__file__))


def flood(port, count, shape):
    """Opens `count` silent connections; returns the sockets (some may have
    been closed by the server at once)."""
    held = []
    for i in range(count):
        if shape == "one-address":
            bind = "127.0.1.1"
        else:
            n = i // 32
            bind = f"127.1.{n // 250}.{1 + n % 250}"
        s = socket.socket()
        s.settimeout(2)
        try:
            s.bind((bind, 0))
            s.connect(("127.0.0.1", port))
            held.append(s)
        except OSError:
            s.close()
    return held


def login_ms(port, user, key):
    """Time until one `sftp -b` login + ls succeeds, and the failures before."""
    cmd = ["sftp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=QUIET", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
           "-i", key, "-P", str(port), "-b", "-", f"{user}@127.0.0.1"]
    start = time.monotonic()
    for attempt in range(10):
        done = subprocess.run(cmd, input="ls\n", text=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        if done.returncode == 0:
            return (time.monotonic() - start) * 1000, attempt
    return None, 10


def series(port, user, key, n):
    times, failures, never = [], 0, 0
    for _ in range(n):
        ms, failed = login_ms(port, user, key)
        failures += failed
        if ms is None:
            never += 1
        else:
            times.append(ms)
    if not times:
        return f"no login succeeded ({failures} failures)"
    return (f"p50 {percentile(times, 50):7.1f} ms  p99 {percentile(times, 99):7.1f} ms  "
            f"dropped attempts {failures}  never in {never}")


def password_storm(binary, procs, work):
    sys.path.insert(0, os.path.join(HERE, "..", "crates/wharf/tests/it/py"))
    os.makedirs(os.path.join(work, "storm"), exist_ok=True)
    keygen(os.path.join(work, "storm", "hostkey"))
    proc, ports = start_wharf(
        procs, binary, os.path.join(work, "storm"),
        'ban_exempt = ["127.0.0.0/8"]\n'
        '[protocols.ftp]\nlisten = "127.0.0.1:0"\n'
        '[storage.default]\nkind = "filesystem"\nroot = "' + work + '/storm/files"\n',
        users=[(["bob", "--password-stdin", "--home-directory-mapping", "/=/default/bob"], "bob-pw\n")])
    before = rss_kib(proc.pid, "VmHWM")
    out = subprocess.run([sys.executable, os.path.join(HERE, "..", "crates/wharf/tests/it/py/defences.py"),
                          "password-storm", str(ports["FTP"]), "128", "bob", "bob-pw"],
                         capture_output=True, text=True, check=True).stdout.strip()
    after = rss_kib(proc.pid, "VmHWM")
    print(f"password storm (128 concurrent wrong passwords): {out}")
    print(f"  wharf peak RSS {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after "
          f"(+{(after - before) / 1024:.0f} MiB)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--flood", type=int, default=10000)
    parser.add_argument("--logins", type=int, default=20)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.flood + 200:
        sys.exit(f"the descriptor limit {hard} is too low for a flood of {args.flood}")
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-flood-", dir="/dev/shm")
    procs = Processes()
    try:
        key = keygen(os.path.join(work, "client"))
        keygen(os.path.join(work, "hostkey"))
        with open(key + ".pub") as f:
            public = f.read().strip()
        os.makedirs(os.path.join(work, "files/bench"), exist_ok=True)
        os.makedirs(os.path.join(work, "w"), exist_ok=True)
        keygen(os.path.join(work, "w", "hostkey"))
        wharf, ports = start_wharf(
            procs, binary, os.path.join(work, "w"),
            f'[protocols.sftp]\nlisten = "127.0.0.1:0"\n'
            f'[storage.default]\nkind = "filesystem"\nroot = "{work}/files"\n',
            users=[["bench", "--ssh-key", public, "--home-directory-mapping", "/=/default/bench"]])
        _, sshd_port = start_sshd(procs, work, key, os.path.join(work, "files"))
        servers = [("wharf", ports["SFTP"], "bench"), ("OpenSSH", sshd_port, "root")]
        print(f"{args.logins} logins each; flood of {args.flood} silent connections")
        for name, port, user in servers:
            print(f"{name:8} no flood      {series(port, user, key, args.logins)}")
        for shape in ["one-address", "spread"]:
            for name, port, user in servers:
                start = time.monotonic()
                held = flood(port, args.flood, shape)
                opened = time.monotonic() - start
                extra = ""
                if name == "wharf":
                    extra = f"  wharf RSS {rss_kib(wharf.pid) / 1024:.0f} MiB"
                result = series(port, user, key, args.logins)
                print(f"{name:8} {shape:13} {result}  "
                      f"({len(held)} connected in {opened:.1f}s){extra}")
                for s in held:
                    s.close()
                # Let the server see the closes before the next round.
                time.sleep(2)
        password_storm(binary, procs, work)
    finally:
        procs.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
