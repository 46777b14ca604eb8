"""PuTTY `psftp` and `pscp` (PuTTY is the SSH core of WinSCP and FileZilla),
with their own defaults: `-batch` (no prompts), the server's host key given
by its fingerprint, and `-pw` or `-i` with a .ppk made by puttygen."""

from __future__ import annotations

import pytest

from cells import matrix
from support import Entry, parse_long_listing, run, run_job


def putty_options(env) -> tuple[list[str], dict]:
    args = ["-batch", "-P", str(env.sftp_port), "-hostkey", env.keys.host_sha256, "-noagent"]
    if env.cell.login == "key":
        args += ["-i", str(env.keys.client_ppk)]
    else:
        args += ["-pw", env.password]
    # PuTTY keeps its random seed and host key cache under $HOME/.putty.
    return args, {"HOME": str(env.work)}


def q(path) -> str:
    """A path quoted for a psftp batch file."""
    return '"' + str(path) + '"'


class Psftp:
    def __init__(self, env):
        self.env = env

    def batch(self, commands: list[str], timeout: float = 120) -> str:
        batch = self.env.work / "psftp.batch"
        batch.write_text("\n".join(commands) + "\n")
        args, extra_env = putty_options(self.env)
        out = run(
            ["psftp", *args, "-bc", "-b", batch, f"{self.env.user}@127.0.0.1"],
            cwd=self.env.work,
            env=extra_env,
            timeout=timeout,
        )
        return out.stdout.decode("utf-8", "replace")

    def upload(self, tree, remote):
        self.batch([f"put -r {q(tree.root)} {q(remote)}"])

    def listdirs(self, remotes):
        out = self.batch([f"ls {q(r)}" if r else "ls" for r in remotes])
        sections: list[list[str]] = []
        for line in out.splitlines():
            if line.startswith("psftp> "):
                sections.append([])
            elif sections:
                sections[-1].append(line)
        return {r: parse_long_listing("\n".join(lines)) for r, lines in zip(remotes, sections)}

    def download(self, remote, local, tree):
        self.batch([f"get -r {q(remote)} {q(local)}"])

    def rename(self, old, new):
        self.batch([f"mv {q(old)} {q(new)}"])

    def delete(self, files, dirs):
        self.batch([f"rm {q(f)}" for f in files] + [f"rmdir {q(d)}" for d in dirs])


@pytest.mark.parametrize("cell", matrix("psftp"))
def test_psftp(cell, env):
    run_job(Psftp(env), env.tree, env.work)


class Pscp(Psftp):
    """pscp copies (-r) and lists (-ls); it cannot make directories, rename
    or delete, so those go through psftp."""

    def pscp(self, *args: str) -> str:
        putty_args, extra_env = putty_options(self.env)
        out = run(["pscp", *putty_args, *args], cwd=self.env.work, env=extra_env)
        return out.stdout.decode("utf-8", "replace")

    def upload(self, tree, remote):
        # pscp (SFTP mode) copies into an existing directory: given a target
        # that does not exist, it creates it but then opens every file of the
        # tree under the target's own name. So: mkdir first (psftp), then
        # copy the tree's entries into it.
        self.batch([f"mkdir {q(remote)}"])
        entries = sorted(str(p) for p in tree.root.iterdir())
        self.pscp("-r", *entries, f"{self.env.user}@127.0.0.1:{remote}")

    def listdirs(self, remotes):
        out = {}
        for remote in remotes:
            text = self.pscp("-ls", f"{self.env.user}@127.0.0.1:{remote or '.'}")
            out[remote] = [Entry(e.name, e.size, e.is_dir) for e in parse_long_listing(text)]
        return out

    def download(self, remote, local, tree):
        self.pscp("-r", f"{self.env.user}@127.0.0.1:{remote}", str(local))


@pytest.mark.parametrize("cell", matrix("pscp"))
def test_pscp(cell, env):
    run_job(Pscp(env), env.tree, env.work)
