"""lftp over SFTP (lftp's own SFTP over the `ssh` program) and over FTPS
(`ftp:ssl-force`), with `mirror -R --parallel=4` up and `mirror
--parallel=4` back. Each step is one `lftp -f` script; listings are `cls`
(lftp's own formatting of what the server said) redirected to a file per
directory."""

from __future__ import annotations

import re

import pytest

from cells import matrix
from support import Entry, run, run_job

# Needed to run unattended and bounded: stop at the first failed command,
# and give up on a broken connection instead of retrying forever.
PRELUDE = [
    "set cmd:fail-exit yes",
    "set net:max-retries 2",
    "set net:reconnect-interval-base 1",
    "set net:timeout 30",
]


def parse_cls(text: str) -> list[Entry]:
    """`cls -1 -F -s --filesize`: "   SIZE NAME" for a file, "   NAME/" for
    a directory."""
    entries = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:(\d+) )?(.+)$", line)
        if not m:
            continue
        name = m[2]
        if name.endswith("/"):
            entries.append(Entry(name[:-1], None, True))
        else:
            entries.append(Entry(name, int(m[1]) if m[1] else None, False))
    return entries


def q(path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Lftp:
    def __init__(self, env, setup: list[str], open_command: str):
        self.env = env
        self.setup = setup
        self.open_command = open_command

    def lftp(self, commands: list[str], timeout: float = 180) -> str:
        script = self.env.work / "lftp.script"
        script.write_text("\n".join(PRELUDE + self.setup + [self.open_command] + commands) + "\n")
        out = run(["lftp", "-f", script], cwd=self.env.work, timeout=timeout, env={"HOME": str(self.env.work)})
        return out.stdout.decode("utf-8", "replace")

    def upload(self, tree, remote):
        self.lftp([f"mirror -R --parallel=4 {q(tree.root)} {q(remote)}"])

    def listdirs(self, remotes):
        files = [self.env.work / f"listing-{i}" for i in range(len(remotes))]
        # One name a line, the size of files in bytes before it, and a /
        # after directories (no dates: S3 prefixes have none, and lftp then
        # leaves the date out of its long format).
        listing = "cls -1 -B -F -s --filesize --block-size=1"
        commands = []
        for r, f in zip(remotes, files):
            commands.append(f"{listing} {q(r + '/')} > {f}" if r else f"{listing} > {f}")
        self.lftp(commands)
        return {r: parse_cls(f.read_text(errors="replace")) for r, f in zip(remotes, files)}

    def download(self, remote, local, tree):
        self.lftp([f"mirror --parallel=4 {q(remote)} {q(local)}"])

    def rename(self, old, new):
        self.lftp([f"mv {q(old)} {q(new)}"])

    def delete(self, files, dirs):
        self.lftp([f"rm {q(f)}" for f in files] + [f"rmdir {q(d)}" for d in dirs])


@pytest.mark.parametrize("cell", matrix("lftp-sftp"))
def test_lftp_sftp(cell, env):
    ssh = ["ssh", "-a", "-x", "-o", f"UserKnownHostsFile={env.known_hosts()}", "-o", "StrictHostKeyChecking=yes"]
    if cell.login == "key":
        ssh += ["-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey"]
        ssh += ["-i", str(env.keys.client_private)]
        login = f"{env.user},"
    else:
        ssh += ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"]
        login = f"{env.user},{env.password}"
    setup = [f"set sftp:connect-program {q(' '.join(ssh))}"]
    client = Lftp(env, setup, f"open -u {login} -p {env.sftp_port} sftp://127.0.0.1")
    run_job(client, env.tree, env.work)


@pytest.mark.parametrize("cell", matrix("lftp-ftps", logins=("password",)))
def test_lftp_ftps(cell, env):
    setup = ["set ftp:ssl-force true", "set ssl:verify-certificate no"]
    client = Lftp(env, setup, f"open -u {env.user},{env.password} -p {env.ftps_port} ftp://127.0.0.1")
    run_job(client, env.tree, env.work)
