#!/usr/bin/env python3
"""wharf's resident memory growth during one large SFTP upload, per store
kind: a filesystem store on tmpfs, and S3 on s3s-fs (8 MiB parts x 4).

For each store a fresh wharf is started, one `ls` warms the session path,
then one OpenSSH `sftp put` of a file (2 GiB by default) runs; growth = VmHWM (peak) minus VmRSS before the upload. The budget
printed is SPEC's: upload_part_size x upload_concurrency + 16 MiB (the
filesystem store has no parts, so only the 16 MiB applies there).

Usage: bench/upload_rss.py [--size-mib 2048] [--runs 1] [--stores fs s3] [--buffer N] [--requests N]
Needs: cargo, sftp, ssh-keygen; s3s-fs for the S3 store (see s3_vs_rclone.py).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from common import Processes, build_wharf, free_port, keygen, rss_kib, sftp, start_wharf, write_random
from s3_vs_rclone import AK, SK, s3s_fs, wait_http, wharf_s3_config


def fs_config(store):
    return f'[protocols.sftp]\nlisten = "127.0.0.1:0"\n[storage.fs]\nkind = "filesystem"\nroot = "{store}"\n'


def measure(binary, work, key, public, procs, config, mapping, src, extra):
    os.makedirs(work)
    shutil.copy(os.path.join(os.path.dirname(work), "hostkey"), os.path.join(work, "hostkey"))
    proc, ports = start_wharf(procs, binary, work, config,
                              users=[["bench", "--ssh-key", public, "--home-directory-mapping", mapping]])
    sftp(ports["SFTP"], "bench", key, "ls /\n")
    before = rss_kib(proc.pid)
    elapsed = sftp(ports["SFTP"], "bench", key, f"put {src} /big.bin\n", extra=extra)
    peak = rss_kib(proc.pid, "VmHWM")
    after = rss_kib(proc.pid)
    proc.terminate()
    proc.wait(10)
    return before, peak, after, elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stores", nargs="+", default=["fs", "s3"], choices=["fs", "s3"])
    parser.add_argument("--buffer", default=None, help="sftp -B request size")
    parser.add_argument("--requests", default=None, help="sftp -R requests in flight")
    args = parser.parse_args()
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-rss-bench-", dir="/dev/shm")
    procs = Processes()
    extra = []
    if args.buffer:
        extra += ["-B", args.buffer]
    if args.requests:
        extra += ["-R", args.requests]
    rows = []
    try:
        key = keygen(os.path.join(work, "client"))
        keygen(os.path.join(work, "hostkey"))
        with open(key + ".pub") as f:
            public = f.read().strip()
        src = os.path.join(work, "big.bin")
        write_random(src, args.size_mib)
        endpoint = None
        if "s3" in args.stores:
            data = os.path.join(work, "s3s-data")
            os.makedirs(os.path.join(data, "bench"))
            port = free_port()
            procs.add(subprocess.Popen([s3s_fs(), "--host", "127.0.0.1", "--port", str(port), "--access-key", AK,
                                        "--secret-key", SK, data], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL))
            wait_http(port)
            endpoint = f"http://127.0.0.1:{port}"
        for run in range(args.runs):
            for store in args.stores:
                if store == "fs":
                    root = os.path.join(work, f"fs-store-{run}")
                    os.makedirs(root)
                    config, mapping, budget = fs_config(root), "/=/fs", 16
                else:
                    config, mapping, budget = wharf_s3_config(endpoint, "bench"), f"/=/s3/rss{run}", 48
                before, peak, after, elapsed = measure(binary, os.path.join(work, f"w-{store}-{run}"), key, public,
                                                       procs, config, mapping, src, extra)
                if store == "fs":
                    os.remove(os.path.join(root, "big.bin"))
                else:
                    shutil.rmtree(os.path.join(work, "s3s-data", "bench", f"rss{run}"), ignore_errors=True)
                rows.append((store, before, peak, after, elapsed, budget))
                print(f"  run {run + 1} {store}: growth {(peak - before) / 1024:.1f} MiB, "
                      f"{(args.size_mib << 20) / elapsed / 1e6:.0f} MB/s", file=sys.stderr)
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
    flags = " ".join(extra) or "(default -B/-R)"
    print(f"\nwharf RSS during one {args.size_mib} MiB SFTP upload, OpenSSH sftp {flags} (MiB)")
    print(f"{'store':6} {'before':>7} {'peak':>7} {'after':>7} {'growth':>7} {'budget':>7} {'MB/s':>6}")
    for store, before, peak, after, elapsed, budget in rows:
        print(f"{store:6} {before / 1024:7.1f} {peak / 1024:7.1f} {after / 1024:7.1f} {(peak - before) / 1024:7.1f} "
              f"{budget:7d} {(args.size_mib << 20) / elapsed / 1e6:6.0f}")


if __name__ == "__main__":
    main()
