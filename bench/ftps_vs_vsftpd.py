#!/usr/bin/env python3
"""wharf FTPS against vsftpd FTPS, same curl client, same certificate.

Both serve a directory on tmpfs over explicit TLS (AUTH TLS, PROT P, TLS
session reuse on data connections). vsftpd serves an anonymous upload
directory (so no system user is needed); wharf a service-managed user.
First a LIST of a directory of --list-files empty files (100,000 by
default) on both, with wharf's peak RSS growth during it (listings stream
page by page, so it should not grow with the directory); then upload and
download of a file (1 GiB by default), alternating order, then login + LIST
latency.

Usage: bench/ftps_vs_vsftpd.py [--size-mib 1024] [--runs 3] [--logins 50] [--list-files 100000]
Needs: vsftpd, curl, openssl (scripts/setup-test-env installs curl; apt-get
install vsftpd).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import Processes, build_wharf, free_port, keygen, rss_kib, start_wharf, write_random


def curl(args):
    start = time.monotonic()
    subprocess.run(["curl", "-s", "-S", "--ssl-reqd", "-k", *args], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def start_vsftpd(procs, work, cert, key):
    root = os.path.join(work, "vsftpd-root")
    os.makedirs(os.path.join(root, "pub"))
    shutil.chown(os.path.join(root, "pub"), user="ftp", group="ftp")
    os.makedirs("/var/run/vsftpd/empty", exist_ok=True)
    port = free_port()
    low = free_port()
    config = os.path.join(work, "vsftpd.conf")
    with open(config, "w") as f:
        f.write(f"""listen=YES
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=YES
no_anon_password=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_other_write_enable=YES
anon_umask=022
anon_root={root}
ssl_enable=YES
allow_anon_ssl=YES
force_anon_data_ssl=YES
force_anon_logins_ssl=YES
rsa_cert_file={cert}
rsa_private_key_file={key}
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port={low}
pasv_max_port={low + 20}
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
""")
    procs.add(subprocess.Popen(["vsftpd", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 10
    while True:
        try:
            curl(["--max-time", "2", f"ftp://127.0.0.1:{port}/"])
            return port
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--list-files", type=int, default=100_000)
    args = parser.parse_args()
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-ftps-bench-", dir="/dev/shm")
    os.chmod(work, 0o755)
    procs = Processes()
    try:
        keygen(os.path.join(work, "hostkey"))
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
        store = os.path.join(work, "wharf-store")
        low = free_port()
        wharf_proc, ports = start_wharf(procs, binary, work, f'''[protocols.ftps]
listen = "127.0.0.1:0"
certificate = "{cert}"
private_key = "{key}"
passive_ports = "{low}-{low + 20}"
[storage.bench]
kind = "filesystem"
root = "{store}"
''', users=[(["bench", "--password-stdin", "--home-directory-mapping", "/=/bench"], "bench-pw\n")])
        vsftpd_port = start_vsftpd(procs, work, cert, key)
        big_list = {}
        if args.list_files:
            for directory in [os.path.join(store, "many"), os.path.join(work, "vsftpd-root/pub/many")]:
                os.makedirs(directory)
                for i in range(args.list_files):
                    open(os.path.join(directory, f"f{i:07}"), "w").close()
            before = rss_kib(wharf_proc.pid)
            big_list["wharf"] = curl(["--user", "bench:bench-pw", f"ftp://127.0.0.1:{ports['FTPS']}/many/"])
            peak = rss_kib(wharf_proc.pid, "VmHWM")
            big_list["vsftpd"] = curl([f"ftp://127.0.0.1:{vsftpd_port}/pub/many/"])
            big_list["rss"] = (peak - before) / 1024
        src = os.path.join(work, "src.bin")
        write_random(src, args.size_mib)
        size = args.size_mib << 20
        targets = {
            "wharf": (["--user", "bench:bench-pw"], f"ftp://127.0.0.1:{ports['FTPS']}/up.bin"),
            "vsftpd": ([], f"ftp://127.0.0.1:{vsftpd_port}/pub/up.bin"),
        }
        results = {}
        for run in range(args.runs):
            order = ["wharf", "vsftpd"] if run % 2 == 0 else ["vsftpd", "wharf"]
            for name in order:
                auth, url = targets[name]
                if name == "vsftpd" and run > 0:
                    os.remove(os.path.join(work, "vsftpd-root/pub/up.bin"))  # vsftpd will not overwrite for anonymous
                up = curl([*auth, "-T", src, url])
                down = curl([*auth, "-o", "/dev/null", url])
                results.setdefault((name, "up"), []).append(size / up / 1e6)
                results.setdefault((name, "down"), []).append(size / down / 1e6)
                print(f"  run {run + 1} {name}: up {size / up / 1e6:.0f} MB/s, down {size / down / 1e6:.0f} MB/s",
                      file=sys.stderr)
        latency = {}
        for name, (auth, url) in targets.items():
            listing = url.rsplit("/", 1)[0] + "/"
            latency[name] = statistics.median(curl([*auth, listing]) for _ in range(args.logins)) * 1000
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nFTPS (explicit TLS, PROT P), {args.size_mib} MiB on tmpfs, curl, median of {args.runs} (MB/s = 1e6 B/s)")
    print(f"{'dir':5} {'wharf':>8} {'vsftpd':>8} {'ratio':>6}")
    for direction in ["up", "down"]:
        w = statistics.median(results[("wharf", direction)])
        v = statistics.median(results[("vsftpd", direction)])
        print(f"{direction:5} {w:8.0f} {v:8.0f} {w / v:6.2f}")
    print(f"login + LIST, median of {args.logins}: wharf {latency['wharf']:.0f} ms, vsftpd {latency['vsftpd']:.0f} ms")
    if big_list:
        print(f"LIST of {args.list_files} files: wharf {big_list['wharf']:.2f} s, vsftpd {big_list['vsftpd']:.2f} s; "
              f"wharf peak RSS growth during it {big_list['rss']:.1f} MiB")


if __name__ == "__main__":
    main()
