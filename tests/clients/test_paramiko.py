"""paramiko (pinned in scripts/setup-test-env), through its SSHClient with
its own defaults: password, key, PUBLIC_KEY_AND_PASSWORD (auth_publickey
then auth_password on one connection), and the fallback from a rejected key
to a password."""

from __future__ import annotations

import stat
from pathlib import Path

import paramiko
import pytest

from cells import Cell, matrix
from support import Entry, join, run_job

TIMEOUTS = dict(timeout=20, banner_timeout=20, auth_timeout=20, channel_timeout=20)


def connect(env, *, pkey=None, password=None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(env.known_hosts()))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            "127.0.0.1",
            port=env.sftp_port,
            username=env.user,
            password=password,
            pkey=pkey,
            look_for_keys=False,
            allow_agent=False,
            **TIMEOUTS,
        )
    except BaseException:
        client.close()  # an open connection would hold wharf's shutdown
        raise
    return client


class Paramiko:
    def __init__(self, sftp: paramiko.SFTPClient):
        self.sftp = sftp

    def upload(self, tree, remote):
        self.sftp.mkdir(remote)
        for d in tree.dirs:
            self.sftp.mkdir(join(remote, d))
        for rel in tree.files:
            attrs = self.sftp.put(str(tree.root / rel), join(remote, rel))
            assert attrs.st_size == tree.files[rel], f"put {rel!r}: server says {attrs.st_size} bytes"

    def listdirs(self, remotes):
        return {
            r: [Entry(a.filename, a.st_size, stat.S_ISDIR(a.st_mode)) for a in self.sftp.listdir_attr(r or ".")]
            for r in remotes
        }

    def download(self, remote, local: Path, tree):
        local.mkdir()
        for a in self.sftp.listdir_attr(remote):
            if stat.S_ISDIR(a.st_mode):
                self.download(join(remote, a.filename), local / a.filename, tree)
            else:
                self.sftp.get(join(remote, a.filename), str(local / a.filename))

    def rename(self, old, new):
        self.sftp.rename(old, new)

    def delete(self, files, dirs):
        for f in files:
            self.sftp.remove(f)
        for d in dirs:
            self.sftp.rmdir(d)


def job(env, client: paramiko.SSHClient):
    try:
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(60)
        run_job(Paramiko(sftp), env.tree, env.work)
    finally:
        client.close()


def client_key(env):
    return paramiko.Ed25519Key.from_private_key_file(str(env.keys.client_private))


@pytest.mark.parametrize("cell", matrix("paramiko"))
def test_paramiko(cell, env):
    if cell.login == "key":
        client = connect(env, pkey=client_key(env))
    else:
        client = connect(env, password=env.password)
    job(env, client)


# PUBLIC_KEY_AND_PASSWORD on the second wharf: the key is accepted as a
# partial success, then SSHClient sends the password (each auth_* call of
# paramiko starts with its own SERVICE_REQUEST ssh-userauth).
KEY_AND_PASSWORD = Cell("paramiko-both", "fs", "LOGICAL", "key-and-password", server="key-and-password")


@pytest.mark.parametrize("cell", [pytest.param(KEY_AND_PASSWORD, id="fs-LOGICAL-key-and-password")])
def test_paramiko_public_key_and_password(cell, env):
    # The server does ask for both: the key alone is a partial success that
    # leaves "password" to go, the password alone is not offered.
    transport = paramiko.Transport(("127.0.0.1", env.sftp_port))
    try:
        transport.start_client(timeout=20)
        remaining = transport.auth_publickey(env.user, client_key(env))
        assert remaining == ["password"] and not transport.is_authenticated(), (
            f"key alone: remaining methods {remaining}, authenticated {transport.is_authenticated()}"
        )
    finally:
        transport.close()
    with pytest.raises(paramiko.BadAuthenticationType):
        connect(env, password=env.password).close()
    # What an application does: SSHClient with both.
    client = connect(env, pkey=client_key(env), password=env.password)
    assert client.get_transport().is_authenticated()
    job(env, client)


# A key the server does not know, then the password: SSHClient tries the key,
# is refused, and falls back to the password on the same connection.
FALLBACK = Cell("paramiko-fallback", "fs", "LOGICAL", "password")


@pytest.mark.parametrize("cell", [pytest.param(FALLBACK, id="fs-LOGICAL-rejected-key-then-password")])
def test_paramiko_rejected_key_falls_back_to_password(cell, env):
    other = paramiko.Ed25519Key.from_private_key_file(str(env.keys.other_private))
    client = connect(env, pkey=other, password=env.password)
    job(env, client)
