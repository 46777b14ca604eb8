"""rclone (Debian's package): the sftp backend and the ftp backend with
explicit TLS, several transfers at once (`--transfers 4`). Remotes are
configured from the environment (RCLONE_CONFIG_<NAME>_<KEY>), passwords
obscured with `rclone obscure`. The job: copy up, list (lsjson), copy back,
`rclone check`, moveto, delete + rmdirs."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest

from cells import matrix
from support import Entry, run, run_job

REMOTE = "wharf"


def obscure(password: str) -> str:
    return run(["rclone", "obscure", password], timeout=30).stdout.decode().strip()


class Rclone:
    def __init__(self, env, config: dict[str, str], flags: list[str]):
        self.env = env
        self.flags = flags
        empty_config = env.work / "rclone.conf"
        empty_config.touch()
        self.vars = {"RCLONE_CONFIG": str(empty_config)}
        self.vars.update({f"RCLONE_CONFIG_{REMOTE.upper()}_{k.upper()}": v for k, v in config.items()})

    def rclone(self, *args: str, timeout: float = 180) -> str:
        out = run(["rclone", *args, *self.flags], env=self.vars, cwd=self.env.work, timeout=timeout)
        return out.stdout.decode("utf-8", "replace")

    def path(self, rel: str) -> str:
        return f"{REMOTE}:{rel}"

    def upload(self, tree, remote):
        self.rclone("copy", str(tree.root), self.path(remote), "--transfers", "4")

    def listdirs(self, remotes):
        if len(remotes) == 1:
            items = json.loads(self.rclone("lsjson", self.path(remotes[0])))
            return {remotes[0]: [Entry(i["Name"], None if i["IsDir"] else i["Size"], i["IsDir"]) for i in items]}
        # One recursive listing of the first directory, split by parent.
        root = remotes[0]
        items = json.loads(self.rclone("lsjson", "-R", self.path(root)))
        out = {r: [] for r in remotes}
        for i in items:
            path = PurePosixPath(root, i["Path"])
            parent = str(path.parent)
            if parent in out:
                out[parent].append(Entry(path.name, None if i["IsDir"] else i["Size"], i["IsDir"]))
        return out

    def download(self, remote, local, tree):
        self.rclone("copy", self.path(remote), str(local), "--transfers", "4")
        # rclone's own comparison of the local tree and the remote.
        self.rclone("check", str(tree.root), self.path(remote))

    def rename(self, old, new):
        self.rclone("moveto", self.path(old), self.path(new))

    def delete(self, files, dirs):
        # `delete` removes the files under job; `rmdirs` the empty
        # directories, job included.
        self.rclone("delete", self.path(dirs[-1]))
        self.rclone("rmdirs", self.path(dirs[-1]))


@pytest.mark.parametrize("cell", matrix("rclone-sftp"))
def test_rclone_sftp(cell, env):
    config = {"type": "sftp", "host": "127.0.0.1", "port": str(env.sftp_port), "user": env.user}
    if cell.login == "key":
        config["key_file"] = str(env.keys.client_private)
    else:
        config["pass"] = obscure(env.password)
    run_job(Rclone(env, config, []), env.tree, env.work)


@pytest.mark.parametrize("cell", matrix("rclone-ftps", logins=("password",)))
def test_rclone_ftps(cell, env):
    config = {
        "type": "ftp",
        "host": "127.0.0.1",
        "port": str(env.ftps_port),
        "user": env.user,
        "pass": obscure(env.password),
    }
    run_job(Rclone(env, config, ["--ftp-explicit-tls", "--ftp-no-check-certificate"]), env.tree, env.work)
