"""OpenSSH `sftp` (batch mode) and `scp`, with their own defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from cells import Cell, matrix
from support import MiB, Entry, describe, parse_long_listing, run, run_job, run_watched, sha256_file, write_random


def ssh_options(env, login: str) -> tuple[list[str], dict]:
    """What it takes to log in without a terminal: the server's host key in a
    known_hosts file, and either the key or the password (through
    SSH_ASKPASS). Everything else is OpenSSH's default."""
    args = [
        "-o", f"UserKnownHostsFile={env.known_hosts()}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "ConnectTimeout=20",
        "-o", "BatchMode=no",  # before -b, which would turn it on: askpass needs it off
        "-o", "NumberOfPasswordPrompts=1",
    ]  # fmt: skip
    extra_env: dict = {"SSH_AUTH_SOCK": ""}
    if login == "key":
        args += ["-o", "PreferredAuthentications=publickey", "-o", "IdentitiesOnly=yes", "-i", env.keys.client_private]
    else:
        askpass = env.work / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{env.password}'\n")
        askpass.chmod(0o700)
        args += ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
        extra_env.update(SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY="none")
    return args, extra_env


def q(path) -> str:
    """A path quoted for an sftp batch file."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class OpenSshSftp:
    def __init__(self, env):
        self.env = env

    def batch(self, commands: list[str], timeout: float = 120) -> str:
        """Runs one `sftp -b` session; returns stdout (commands echoed as
        `sftp> ...`). A failing command ends the batch with an error."""
        batch = self.env.work / "batch"
        batch.write_text("\n".join(commands) + "\n")
        args, extra_env = ssh_options(self.env, self.env.cell.login)
        out = run(
            ["sftp", *args, "-P", self.env.sftp_port, "-b", batch, f"{self.env.user}@127.0.0.1"],
            cwd=self.env.work,
            env=extra_env,
            timeout=timeout,
        )
        # A few failures do not end the batch (`ls` of the working
        # directory reports a failed READDIR and goes on): they are failures
        # here all the same.
        errors = [
            line
            for line in out.stderr.decode("utf-8", "replace").splitlines()
            if line.startswith(("remote readdir", "Couldn't", "Can't"))
        ]
        if errors:
            note = "sftp reported: " + "; ".join(errors)
            raise AssertionError(describe(out.args, out.returncode, out.stdout, out.stderr, note=note))
        return out.stdout.decode("utf-8", "replace")

    def upload(self, tree, remote):
        self.batch([f"put -r {q(tree.root)} {q(remote)}"])

    def listdirs(self, remotes):
        out = self.batch([f"ls -ln {q(r)}" if r else "ls -ln" for r in remotes])
        # Split the output at the echoed commands, one section per directory.
        sections: list[list[str]] = []
        for line in out.splitlines():
            if line.startswith("sftp> "):
                sections.append([])
            elif sections:
                sections[-1].append(line)
        result = {}
        for remote, lines in zip(remotes, sections):
            # `ls DIR` prints DIR/NAME: keep the name.
            result[remote] = [
                Entry(e.name.rsplit("/", 1)[-1], e.size, e.is_dir) for e in parse_long_listing("\n".join(lines))
            ]
        return result

    def download(self, remote, local, tree):
        self.batch([f"get -r {q(remote)} {q(local)}"])

    def rename(self, old, new):
        self.batch([f"rename {q(old)} {q(new)}"])

    def delete(self, files, dirs):
        self.batch([f"rm {q(f)}" for f in files] + [f"rmdir {q(d)}" for d in dirs])


@pytest.mark.parametrize("cell", matrix("openssh-sftp"))
def test_openssh_sftp(cell, env):
    run_job(OpenSshSftp(env), env.tree, env.work)


class OpenSshScp(OpenSshSftp):
    """scp moves the files (OpenSSH 9 speaks SFTP underneath); it cannot
    list, rename or delete, so those steps go through `sftp -b`."""

    def scp(self, *args: str):
        ssh_args, extra_env = ssh_options(self.env, self.env.cell.login)
        run(["scp", *ssh_args, "-P", self.env.sftp_port, *args], cwd=self.env.work, env=extra_env)

    def upload(self, tree, remote):
        self.scp("-r", str(tree.root), f"{self.env.user}@127.0.0.1:{remote}")

    def download(self, remote, local, tree):
        self.scp("-r", f"{self.env.user}@127.0.0.1:{remote}", str(local))


@pytest.mark.parametrize("cell", matrix("openssh-scp"))
def test_openssh_scp(cell, env):
    run_job(OpenSshScp(env), env.tree, env.work)


# Deep pipelining: 256 requests of 255 KiB in flight, and keepalives that end
# the session if the server stops answering for 15 s. Filesystem store and a
# LOGICAL home only: the case is about the SFTP dispatcher's flow control,
# not about the store, and 200 MiB through moto would take minutes.
DEEP = Cell("openssh-deep", "fs", "LOGICAL", "key")
DEEP_SIZE = 200 * MiB


@pytest.mark.parametrize("cell", [pytest.param(DEEP, id="fs-LOGICAL-key-200MiB")])
def test_openssh_sftp_deep_pipelining(cell, env):
    source = env.work / "deep.bin"
    write_random(source, DEEP_SIZE)
    args, extra_env = ssh_options(env, cell.login)
    deep = ["-R", "256", "-B", "261120", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

    def sftp(command: str, watch: Path | None):
        batch = env.work / "deep.batch"
        batch.write_text(command + "\n")
        run_watched(
            ["sftp", *args, *deep, "-P", env.sftp_port, "-b", batch, f"{env.user}@127.0.0.1"],
            progress=watch,
            stall=20,
            timeout=240,
            cwd=env.work,
            env=extra_env,
        )

    # The upload goes to an unnamed temporary file on the server, visible
    # only when complete: nothing grows that could be watched, so only the
    # overall deadline applies.
    sftp(f"put {q(source)} deep.bin", None)
    back = env.work / "deep.back"
    sftp(f"get deep.bin {q(back)}", back)
    assert back.stat().st_size == DEEP_SIZE, f"got {back.stat().st_size:,} bytes of {DEEP_SIZE:,}"
    assert sha256_file(back) == sha256_file(source), "the 200 MiB file came back with different bytes"
    OpenSshSftp(env).batch(["rm deep.bin"])
