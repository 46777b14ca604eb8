"""PHP through libssh2: Debian's php-ssh2 extension (ssh2_connect,
ssh2_auth_password, ssh2_sftp and the ssh2.sftp:// stream wrapper), one
`php` process per step of the job (php/ssh2_job.php). Password logins only."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cells import matrix
from support import Entry, run, run_job

SCRIPT = Path(__file__).resolve().parent / "php" / "ssh2_job.php"


def php_ssh2_missing() -> str | None:
    if not shutil.which("php"):
        return "php is not installed (scripts/setup-test-env installs php-cli)"
    probe = subprocess.run(
        ["php", "-r", 'exit(function_exists("ssh2_connect") ? 0 : 1);'], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        return "the PHP ssh2 extension (Debian php-ssh2) is not installed"
    return None


pytestmark = pytest.mark.skipif(php_ssh2_missing() is not None, reason=str(php_ssh2_missing()))


class Php:
    def __init__(self, env):
        self.env = env

    def php(self, step: str, *args: str) -> str:
        env = self.env
        out = run(
            ["php", SCRIPT, "127.0.0.1", env.sftp_port, env.user, env.password, step, *args],
            cwd=env.work,
            timeout=120,
        )
        return out.stdout.decode("utf-8", "replace")

    def upload(self, tree, remote):
        self.php("upload", str(tree.root), remote)

    def listdirs(self, remotes):
        listed = json.loads(self.php("list", *remotes))
        return {r: [Entry(name, size, is_dir) for name, size, is_dir in listed.get(r) or []] for r in remotes}

    def download(self, remote, local, tree):
        self.php("download", remote, str(local))

    def rename(self, old, new):
        self.php("rename", old, new)

    def delete(self, files, dirs):
        self.php("delete", *files, "--", *dirs)


@pytest.mark.parametrize("cell", matrix("php-ssh2", logins=("password",)))
def test_php_ssh2(cell, env):
    run_job(Php(env), env.tree, env.work)
