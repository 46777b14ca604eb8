#!/usr/bin/env python3
"""Login + `ls` latency through each identity provider side by side, against
OpenSSH with a local user, same OpenSSH client, in one run.

One wharf process per provider, one after another (never two at once):

* `lambda`: examples/identity-providers/runner.py serving a handler (the
  baseline: what this benchmark measured before);
* `service_managed`: wharf's own SQLite user store (`wharf user add
  --password-stdin --ssh-key`), argon2id as wharf makes it;
* `ldap`: a private OpenLDAP slapd (plain ldap://, no TLS), service-account
  search then a bind as the user; keys from `sshPublicKey`;
* `sql`: a private PostgreSQL, a table with a password hash column
  (argon2id with wharf's own parameters by default, `--sql-hash bcrypt`
  for bcrypt) and a `PublicKeys` column.

Every provider answers the same session (PATH home /bench/user) with
`cache_ttl = "0s"`, so every login asks the provider. Each login is a fresh
`sftp -b` process doing one `ls /`; key and password logins of a provider
alternate, after a few warm-up logins of each. The OpenSSH reference (key
login, a private sshd) is sampled throughout the run: its logins are
spread over the providers' phases, so that it sees the same machine.

Usage: bench/idp_login_latency.py [--logins 200] [--providers lambda sql ...]
                                  [--sql-hash argon2id|bcrypt]
(WHARF_BINARY=path: use that build; BENCH_SHOW_LOG=1: print each wharf's
last stderr lines after its phase.)
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

from common import (LDAP_SUFFIX, ROOT, Postgres, Processes, build_wharf, drain_stderr, keygen, ldap_add,
                    percentile, sftp, sftp_password, start_slapd, start_sshd, start_wharf)

VENV_PYTHON = os.path.join(ROOT, ".venv/bin/python3")
PROVIDERS = ["lambda", "service_managed", "ldap", "sql"]
USER = "bench"
PASSWORD = "bench-Pass-9"
HOME = "/bench/user"
WARMUP = 5
# wharf's service-managed hashes: argon2::Argon2::default() of the argon2
# crate 0.6 (crates/wharf-identity/src/password.rs), that is argon2id v19,
# m=19456 KiB, t=2, p=1, 16-byte salt, 32-byte hash.
ARGON2 = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1, "hash_len": 32, "salt_len": 16}
BCRYPT_COST = 12

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


def password_hash(scheme):
    """A hash of PASSWORD by the reference Python implementations (the
    project's virtualenv: argon2-cffi, bcrypt)."""
    if scheme == "argon2id":
        code = ("import sys, json, argon2; print(argon2.PasswordHasher(type=argon2.Type.ID, "
                "**json.loads(sys.argv[2])).hash(sys.argv[1]))")
        arguments = [PASSWORD, json.dumps(ARGON2)]
    else:
        code = "import sys, bcrypt; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(int(sys.argv[2]))).decode())"
        arguments = [PASSWORD, str(BCRYPT_COST)]
    if not os.path.exists(VENV_PYTHON):
        sys.exit(f"{VENV_PYTHON} not found: run scripts/setup-test-env (argon2-cffi and bcrypt make the sql hashes)")
    return subprocess.run([VENV_PYTHON, "-c", code, *arguments], check=True, capture_output=True,
                          text=True).stdout.strip()


def hash_label(scheme):
    if scheme == "argon2id":
        return f"argon2id m={ARGON2['memory_cost']} KiB t={ARGON2['time_cost']} p={ARGON2['parallelism']}"
    return f"bcrypt cost {BCRYPT_COST}"


class Bench:
    def __init__(self, args, binary, work, key, public):
        self.args = args
        self.binary = binary
        self.work = work
        self.key = key
        self.public = public
        self.store = os.path.join(work, "store")
        os.makedirs(os.path.join(self.store, "user"))
        self.common = f'''[protocols.sftp]
listen = "127.0.0.1:0"
[storage.bench]
kind = "filesystem"
root = "{self.store}"
'''

    def wharf_dir(self, name):
        directory = os.path.join(self.work, name)
        os.makedirs(directory)
        shutil.copy(os.path.join(self.work, "hostkey"), os.path.join(directory, "hostkey"))
        return directory

    def start(self, procs, name, identity, users=()):
        """Checks and starts wharf with `identity` (an [identity_provider]
        section); returns its SFTP port."""
        directory = self.wharf_dir(name)
        body = self.common + identity
        config = os.path.join(directory, "wharf.toml")
        # start_wharf writes the same file; check it first.
        with open(config, "w") as f:
            f.write(f'[server]\ndata_dir = "{directory}/wharf-data"\nhost_keys = ["{directory}/hostkey"]\n'
                    f'idle_timeout = "1h"\n{body}')
        check = subprocess.run([self.binary, "check-config", "--config", config], capture_output=True, text=True)
        if check.returncode != 0:
            sys.exit(f"wharf check-config ({name}) failed:\n{check.stdout}{check.stderr}")
        proc, ports = start_wharf(procs, self.binary, directory, body, users)
        if "SFTP" not in ports:
            proc.wait(5)
            sys.exit(f"wharf ({name}) did not start: exit {proc.returncode}")
        self.log = drain_stderr(proc)
        return ports["SFTP"]

    def logins(self, port):
        def key():
            sftp(port, USER, self.key, "ls /\n")

        def password():
            sftp_password(port, USER, PASSWORD, "ls /\n", self.work)
        return key, password

    # Each provider: a context of its own (servers started, users seeded),
    # yielding the SFTP port; everything it started is stopped after.

    def lambda_(self, procs):
        users = os.path.join(self.work, "users.json")
        with open(users, "w") as f:
            json.dump({USER: {"password": PASSWORD, "keys": [self.public],
                              "response": {"HomeDirectory": HOME}}}, f)
        handler = os.path.join(self.work, "handler.py")
        with open(handler, "w") as f:
            f.write(HANDLER)
        runner = procs.add(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples/identity-providers/runner.py"), "--port", "0",
             "--handler", f"{handler}:lambda_handler"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(self.work, "runner.log"), "w"), text=True,
            env={**os.environ, "BENCH_USERS": users}))
        runner_port = int(runner.stdout.readline().strip().rsplit(":", 1)[1])
        return self.start(procs, "lambda", f'''[identity_provider]
type = "lambda"
url = "http://127.0.0.1:{runner_port}/2015-03-31/functions/function/invocations"
cache_ttl = "0s"
''')

    def service_managed(self, procs):
        return self.start(procs, "service_managed", '''[identity_provider]
type = "service_managed"
cache_ttl = "0s"
''', users=[(["--password-stdin", "--ssh-key", self.public, "--home-directory", HOME, USER], PASSWORD + "\n")])

    def ldap(self, procs):
        _, url = start_slapd(procs, self.work)
        service_dn = f"cn=wharf,ou=services,{LDAP_SUFFIX}"
        user_password = subprocess.run(["slappasswd", "-h", "{SSHA}", "-s", PASSWORD], check=True,
                                       capture_output=True, text=True).stdout.strip()
        ldap_add(url, f"""dn: ou=services,{LDAP_SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {service_dn}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: wharf
userPassword: wharf-service-pw

dn: ou=people,{LDAP_SUFFIX}
objectClass: organizationalUnit
ou: people

dn: uid={USER},ou=people,{LDAP_SUFFIX}
objectClass: inetOrgPerson
objectClass: posixAccount
objectClass: ldapPublicKey
uid: {USER}
cn: Bench User
sn: User
uidNumber: 10000
gidNumber: 10000
homeDirectory: {HOME}
userPassword: {user_password}
sshPublicKey: {self.public}
""")
        return self.start(procs, "ldap", f'''[identity_provider]
type = "ldap"
url = "{url}"
service_bind_dn = "{service_dn}"
service_bind_password = "wharf-service-pw"
search_base = "ou=people,{LDAP_SUFFIX}"
cache_ttl = "0s"
[identity_provider.attributes]
HomeDirectory = "homeDirectory"
PublicKeys = "sshPublicKey"
''')

    def sql(self, procs):
        postgres = Postgres("/dev/shm")
        self.postgres = postgres
        postgres.psql("CREATE DATABASE accounts")
        postgres.psql(f"""CREATE TABLE accounts (login text PRIMARY KEY, pw_hash text, home text, keys text);
INSERT INTO accounts VALUES ('{USER}', '{password_hash(self.args.sql_hash)}', '{HOME}', '{self.public}');
""", "accounts")
        return self.start(procs, "sql", f'''[identity_provider]
type = "sql"
database = "{postgres.url("accounts")}"
query = 'SELECT pw_hash, home AS "HomeDirectory", keys AS "PublicKeys" FROM accounts WHERE login = $1'
password_hash_column = "pw_hash"
cache_ttl = "0s"
''')


def timed(login):
    start = time.monotonic()
    login()
    return (time.monotonic() - start) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="timed logins per provider and kind")
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=PROVIDERS)
    parser.add_argument("--sql-hash", choices=["argon2id", "bcrypt"], default="argon2id",
                        help="the sql provider's password column (default: argon2id with wharf's parameters)")
    args = parser.parse_args()
    binary = build_wharf()
    work = tempfile.mkdtemp(prefix="wharf-idp-bench-", dir="/dev/shm")
    reference = Processes()
    runs = {}
    openssh = []
    load = [os.getloadavg()[0]]
    try:
        key = keygen(os.path.join(work, "client"))
        keygen(os.path.join(work, "hostkey"))
        with open(key + ".pub") as f:
            public = f.read().strip()
        bench = Bench(args, binary, work, key, public)
        ssh_store = os.path.join(work, "ssh-store")
        os.makedirs(ssh_store)
        _, sshd_port = start_sshd(reference, work, key, ssh_store)

        def openssh_login():
            sftp(sshd_port, "root", key, f"ls {ssh_store}\n")
        for _ in range(WARMUP):
            openssh_login()
        for phase, provider in enumerate(args.providers):
            procs = Processes()
            bench.postgres = None
            try:
                port = getattr(bench, "lambda_" if provider == "lambda" else provider)(procs)
                key_login, password_login = bench.logins(port)
                for _ in range(WARMUP):
                    key_login()
                    password_login()
                kinds = [(runs.setdefault((provider, "key"), []), key_login),
                         (runs.setdefault((provider, "password"), []), password_login)]
                # This phase's share of the OpenSSH samples, spread evenly over its rounds.
                share = args.logins * (phase + 1) // len(args.providers) - len(openssh)
                for i in range(args.logins):
                    for times, login in (kinds if i % 2 == 0 else kinds[::-1]):
                        times.append(timed(login))
                    if (i + 1) * share // args.logins > i * share // args.logins:
                        openssh.append(timed(openssh_login))
                if os.environ.get("BENCH_SHOW_LOG"):
                    print(f"--- wharf ({provider}) stderr, last lines:", *bench.log, sep="\n")
            finally:
                procs.stop()
                if bench.postgres is not None:
                    bench.postgres.stop()
            load.append(os.getloadavg()[0])
    finally:
        reference.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, runs, openssh, load)


def report(args, runs, openssh, load):
    base = statistics.median(openssh)
    print(f"\nlogin + `ls /`, {args.logins} sequential logins per row (after {WARMUP} warm-up logins of each kind), "
          "OpenSSH sftp client (aes128-gcm), loopback")
    header = f"{'provider':16} {'login':9} {'p50 ms':>8} {'p99 ms':>8} {'p50/OpenSSH':>12} {'p50/lambda':>11}"
    print(header)
    print("-" * len(header))
    for (provider, kind), times in runs.items():
        p50 = statistics.median(times)
        lam = runs.get(("lambda", kind))
        vs_lambda = f"{p50 / statistics.median(lam):10.2f}x" if lam else f"{'-':>11}"
        print(f"{provider:16} {kind:9} {p50:8.1f} {percentile(times, 99):8.1f} {p50 / base:11.2f}x {vs_lambda}")
    print(f"{'OpenSSH sshd':16} {'key':9} {base:8.1f} {percentile(openssh, 99):8.1f} {1:11.2f}x {'-':>11}")
    print(f"""
* wharf: one process per provider, one after another, cache_ttl = "0s" (every login asks the provider);
  every provider answers the same session (PATH home {HOME}, filesystem store on tmpfs); key and password
  logins alternate. lambda = the baseline (examples/identity-providers/runner.py, Python, loopback HTTP).
* service_managed: wharf's SQLite store; argon2id as wharf makes it (argon2 crate defaults:
  m=19456 KiB, t=2, p=1).
* sql: PostgreSQL (fsync off) on loopback TCP, password column {hash_label(args.sql_hash)}, PublicKeys a text column.
* ldap: OpenLDAP slapd (mdb) over plain ldap:// (no TLS, no StartTLS): search as a service account, then a
  bind as the user; userPassword {{SSHA}} (one salted SHA-1, so no slow hash on this path); keys from sshPublicKey.
* OpenSSH: a private sshd (internal-sftp), key login as a local user; its {len(openssh)} logins are spread over
  the providers' phases. 1-minute load average per phase: {' -> '.join(f'{x:.2f}' for x in load)}.""")


if __name__ == "__main__":
    main()
