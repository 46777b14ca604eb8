#!/usr/bin/env python3
"""Login + `ls` latency through a warm local Lambda-style identity provider,
against OpenSSH with a local user, same OpenSSH client.

wharf uses `identity_provider.type = "lambda"` pointed at
examples/identity-providers/runner.py serving a handler; each login is a
fresh `sftp -b` process doing one `ls`. Key logins on both (the provider
returns PublicKeys; sshd reads authorized_keys); wharf password logins too.

Usage: bench/idp_login_latency.py [--logins 200]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT, Processes, build_wharf, keygen, percentile, sftp, start_sshd, start_wharf

HANDLER = '''
import json, os
USERS = json.load(open(os.environ["BENCH_USERS"]))
def lambda_handler(event, context):
    user = USERS.get(event.get("username", ""))
    if user is None:
        return {}
    response = dict(user["response"])
    if event.get("password"):
        if event["password"] != user["password"]:
            return {}
    else:
        response["PublicKeys"] = user["keys"]
    return response
'''


def timed_logins(n, login):
    times = []
    for _ in range(n):
        start = time.monotonic()
        login()
        times.append((time.monotonic() - start) * 1000)
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args()
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-idp-bench-", dir="/dev/shm")
    procs = Processes()
    try:
        key = keygen(os.path.join(work, "client"))
        keygen(os.path.join(work, "hostkey"))
        with open(key + ".pub") as f:
            public = f.read().strip()
        users = os.path.join(work, "users.json")
        with open(users, "w") as f:
            json.dump({"bench": {"password": "bench-pw", "keys": [public], "response": {
                "HomeDirectoryType": "LOGICAL",
                "HomeDirectoryDetails": json.dumps([{"Entry": "/", "Target": "/bench/user"}])}}}, f)
        handler = os.path.join(work, "handler.py")
        with open(handler, "w") as f:
            f.write(HANDLER)
        runner = procs.add(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples/identity-providers/runner.py"), "--port", "0",
             "--handler", f"{handler}:lambda_handler"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "BENCH_USERS": users}))
        runner_port = int(runner.stdout.readline().strip().rsplit(":", 1)[1])
        store = os.path.join(work, "store")
        _, ports = start_wharf(procs, binary, work, f'''[protocols.sftp]
listen = "127.0.0.1:0"
[storage.bench]
kind = "filesystem"
root = "{store}"
[identity_provider]
type = "lambda"
url = "http://127.0.0.1:{runner_port}/2015-03-31/functions/function/invocations"
''')
        ssh_store = os.path.join(work, "ssh-store")
        os.makedirs(ssh_store)
        _, sshd_port = start_sshd(procs, work, key, ssh_store)
        askpass = os.path.join(work, "askpass.sh")
        with open(askpass, "w") as f:
            f.write("#!/bin/sh\necho bench-pw\n")
        os.chmod(askpass, 0o700)

        def wharf_password():
            subprocess.run(["sftp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
                            "-o", "PreferredAuthentications=password", "-P", str(ports["SFTP"]), "-b", "-",
                            "bench@127.0.0.1"], input="ls /\n", text=True, check=True, stdout=subprocess.DEVNULL,
                           env={**os.environ, "SSH_ASKPASS": askpass, "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": "x"})

        # Warm up both (and the provider).
        for _ in range(5):
            sftp(ports["SFTP"], "bench", key, "ls /\n")
            sftp(sshd_port, "root", key, f"ls {ssh_store}\n")
        runs = {}
        for name, login in [
            ("wharf, key login via lambda", lambda: sftp(ports["SFTP"], "bench", key, "ls /\n")),
            ("wharf, password login via lambda", wharf_password),
            ("OpenSSH, key login, local user", lambda: sftp(sshd_port, "root", key, f"ls {ssh_store}\n")),
        ]:
            runs[name] = timed_logins(args.logins, login)
    finally:
        procs.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nlogin + ls, {args.logins} sequential logins, OpenSSH sftp client (aes128-gcm), loopback")
    print(f"{'':36} {'p50 ms':>8} {'p99 ms':>8}")
    for name, times in runs.items():
        print(f"{name:36} {statistics.median(times):8.1f} {percentile(times, 99):8.1f}")


if __name__ == "__main__":
    main()
