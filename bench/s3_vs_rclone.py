#!/usr/bin/env python3
"""wharf on S3 against `rclone serve sftp` on the same S3 endpoint and
against a direct rclone copy, same OpenSSH client and cipher.

Throughput runs against s3s-fs (a signature-checking S3 server on tmpfs;
moto caps uploads near 61 MB/s): upload and download of a file (1 GiB by
default), alternating order, medians and ratios. Then:
  - wharf's RSS growth during a 2 GiB upload (peak minus before), on a fresh
    process, against upload_part_size x upload_concurrency;
  - listing 100,000 objects under one prefix on moto_server (which pages
    like S3; s3s-fs ignores MaxKeys): time to the first entry and to the
    whole listing, wharf and rclone serve sftp.

Usage: bench/s3_vs_rclone.py [--size-mib 1024] [--runs 3] [--list-objects 100000]
Needs: s3s-fs (installed into bench/.tools on first use with
`cargo install s3s-fs@0.14.1 --features binary --locked`), rclone, sftp,
the test virtualenv (scripts/setup-test-env) for moto, boto3 and paramiko.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, Processes, build_wharf, free_port, keygen, rss_kib, sftp, start_wharf, write_random

AK, SK = "benchaccesskey", "benchsecretkey123"
VENV_PYTHON = os.path.join(ROOT, ".venv/bin/python3")


def s3s_fs():
    tools = os.path.join(ROOT, "bench/.tools")
    binary = os.path.join(tools, "bin/s3s-fs")
    if not os.path.exists(binary):
        print("installing s3s-fs 0.14.1 into bench/.tools (a few minutes, once)...", file=sys.stderr)
        subprocess.run(["cargo", "install", "s3s-fs@0.14.1", "--features", "binary", "--locked", "--root", tools],
                       check=True)
    return binary


def wait_http(port, deadline=60):
    import urllib.request
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except Exception as error:  # any HTTP answer (even 403) means it is up
            if hasattr(error, "code"):
                return
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def rclone_env(endpoint):
    # rclone 1.60 fails on AWS_CA_BUNDLE ("unsupported transport"); the
    # endpoint is plain HTTP on loopback anyway.
    environ = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return {**environ, "RCLONE_CONFIG_S3_TYPE": "s3", "RCLONE_CONFIG_S3_PROVIDER": "Other",
            "RCLONE_CONFIG_S3_ENDPOINT": endpoint, "RCLONE_CONFIG_S3_ACCESS_KEY_ID": AK,
            "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": SK, "RCLONE_CONFIG_S3_REGION": "us-east-1",
            "RCLONE_CONFIG_S3_FORCE_PATH_STYLE": "true"}


def start_rclone_sftp(procs, work, key, endpoint, bucket):
    port = free_port()
    proc = procs.add(subprocess.Popen(
        ["rclone", "serve", "sftp", f"s3:{bucket}", "--addr", f"127.0.0.1:{port}", "--key", f"{work}/hostkey",
         "--authorized-keys", key + ".pub"],
        env=rclone_env(endpoint), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for line in proc.stderr:
        if "SFTP server listening" in line or "listening on" in line.lower():
            break
    return port


def wharf_s3_config(endpoint, bucket, part="8MiB", concurrency=4):
    return f'''[protocols.sftp]
listen = "127.0.0.1:0"
[storage.s3]
kind = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
access_key_id = "{AK}"
secret_access_key = "{SK}"
upload_part_size = "{part}"
upload_concurrency = {concurrency}
'''


def throughput(args, binary, work, key, public, procs):
    data = os.path.join(work, "s3s-data")
    os.makedirs(os.path.join(data, "bench"))
    port = free_port()
    procs.add(subprocess.Popen([s3s_fs(), "--host", "127.0.0.1", "--port", str(port), "--access-key", AK,
                                "--secret-key", SK, data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_http(port)
    endpoint = f"http://127.0.0.1:{port}"
    src = os.path.join(work, "src.bin")
    write_random(src, args.size_mib)
    size = args.size_mib << 20
    _, ports = start_wharf(procs, binary, os.path.join(work, "w1"), wharf_s3_config(endpoint, "bench"),
                           users=[["bench", "--ssh-key", public, "--home-directory-mapping", "/=/s3/wharf"]])
    rclone_port = start_rclone_sftp(procs, work, key, endpoint, "bench")
    env = rclone_env(endpoint)
    results = {}
    for run in range(args.runs):
        order = ["wharf", "rclone serve sftp", "rclone direct"]
        if run % 2:
            order.reverse()
        for name in order:
            if name == "wharf":
                up = sftp(ports["SFTP"], "bench", key, f"put {src} /up.bin\n", args.cipher)
                down = sftp(ports["SFTP"], "bench", key, "get /up.bin /dev/null\n", args.cipher)
            elif name == "rclone serve sftp":
                up = sftp(rclone_port, "bench", key, f"put {src} /rclone-up.bin\n", args.cipher)
                down = sftp(rclone_port, "bench", key, "get /rclone-up.bin /dev/null\n", args.cipher)
            else:
                start = time.monotonic()
                # --ignore-times: the object is already there from the run before.
                subprocess.run(["rclone", "copyto", "--ignore-times", src, "s3:bench/direct/up.bin"], env=env, check=True)
                up = time.monotonic() - start
                start = time.monotonic()
                subprocess.run(["rclone", "cat", "s3:bench/direct/up.bin"], env=env, check=True,
                               stdout=subprocess.DEVNULL)
                down = time.monotonic() - start
            results.setdefault((name, "up"), []).append(size / up / 1e6)
            results.setdefault((name, "down"), []).append(size / down / 1e6)
            print(f"  run {run + 1} {name}: up {size / up / 1e6:.0f} MB/s, down {size / down / 1e6:.0f} MB/s",
                  file=sys.stderr)
    return endpoint, results


def upload_rss(binary, work, key, public, procs, endpoint, mib):
    """Peak RSS growth of a fresh wharf during one large upload."""
    src = os.path.join(work, "big.bin")
    write_random(src, mib)
    proc, ports = start_wharf(procs, binary, os.path.join(work, "w2"), wharf_s3_config(endpoint, "bench"),
                              users=[["bench", "--ssh-key", public, "--home-directory-mapping", "/=/s3/rss"]])
    sftp(ports["SFTP"], "bench", key, "ls /\n")
    before = rss_kib(proc.pid)
    sftp(ports["SFTP"], "bench", key, f"put {src} /big.bin\n")
    peak = rss_kib(proc.pid, "VmHWM")
    os.remove(src)
    return before, peak


LISTING = r'''
import sys, time, paramiko
port, user, key, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
t = paramiko.Transport(("127.0.0.1", port))
t.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(key))
s = paramiko.SFTPClient.from_transport(t)
start = time.monotonic(); first = None; n = 0
for _ in s.listdir_iter(path, read_aheads=1):
    if first is None:
        first = time.monotonic() - start
    n += 1
print(n, first, time.monotonic() - start)
'''


def listing(binary, work, key, public, procs, count):
    moto_port = free_port()
    procs.add(subprocess.Popen([os.path.join(ROOT, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p",
                                str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_http(moto_port)
    endpoint = f"http://127.0.0.1:{moto_port}"
    print(f"  creating {count} objects in moto...", file=sys.stderr)
    subprocess.run([VENV_PYTHON, "-c", f'''
import boto3, concurrent.futures
s3 = boto3.client("s3", endpoint_url="{endpoint}", aws_access_key_id="{AK}", aws_secret_access_key="{SK}", region_name="us-east-1")
s3.create_bucket(Bucket="many")
def put(i): s3.put_object(Bucket="many", Key=f"big/f{{i:06d}}", Body=b"x")
with concurrent.futures.ThreadPoolExecutor(32) as pool: list(pool.map(put, range({count})))
'''], check=True)
    _, ports = start_wharf(procs, binary, os.path.join(work, "w3"), wharf_s3_config(endpoint, "many"),
                           users=[["bench", "--ssh-key", public, "--home-directory-mapping", "/=/s3"]])
    rclone_port = start_rclone_sftp(procs, work, key, endpoint, "many")
    script = os.path.join(work, "listing.py")
    with open(script, "w") as f:
        f.write(LISTING)
    out = {}
    for name, port, path in [("wharf", ports["SFTP"], "/big"), ("rclone serve sftp", rclone_port, "/big")]:
        n, first, total = subprocess.run([VENV_PYTHON, script, str(port), "bench", key, path], check=True,
                                         capture_output=True, text=True).stdout.split()
        out[name] = (int(n), float(first), float(total))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cipher", default="aes128-gcm@openssh.com")
    parser.add_argument("--rss-mib", type=int, default=2048)
    parser.add_argument("--list-objects", type=int, default=100_000)
    args = parser.parse_args()
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-s3-bench-", dir="/dev/shm")
    procs = Processes()
    try:
        for d in ["w1", "w2", "w3"]:
            os.makedirs(os.path.join(work, d))
        key = keygen(os.path.join(work, "client"))
        keygen(os.path.join(work, "hostkey"))
        for d in ["w1", "w2", "w3"]:
            shutil.copy(os.path.join(work, "hostkey"), os.path.join(work, d, "hostkey"))
        with open(key + ".pub") as f:
            public = f.read().strip()
        endpoint, results = throughput(args, binary, work, key, public, procs)
        before, peak = upload_rss(binary, work, key, public, procs, endpoint, args.rss_mib)
        listed = listing(binary, work, key, public, procs, args.list_objects) if args.list_objects else {}
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nS3 (s3s-fs on tmpfs), {args.size_mib} MiB, OpenSSH sftp client -c {args.cipher}, "
          f"median of {args.runs} (MB/s = 1e6 B/s)")
    names = ["wharf", "rclone serve sftp", "rclone direct"]
    print(f"{'dir':5} " + " ".join(f"{n:>18}" for n in names) + f" {'vs serve':>9} {'vs direct':>9}")
    for direction in ["up", "down"]:
        m = {n: statistics.median(results[(n, direction)]) for n in names}
        print(f"{direction:5} " + " ".join(f"{m[n]:18.0f}" for n in names)
              + f" {m['wharf'] / m['rclone serve sftp']:9.2f} {m['wharf'] / m['rclone direct']:9.2f}")
    print(f"\nwharf RSS during a {args.rss_mib} MiB upload (8 MiB parts x 4): before {before / 1024:.1f} MiB, "
          f"peak {peak / 1024:.1f} MiB, growth {(peak - before) / 1024:.1f} MiB (budget 32 + 16 MiB)")
    for name, (n, first, total) in listed.items():
        print(f"listing {n} objects, {name}: first entry {first * 1000:.0f} ms, all {total:.1f} s")


if __name__ == "__main__":
    main()
