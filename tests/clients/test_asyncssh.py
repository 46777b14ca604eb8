"""asyncssh (pinned in scripts/setup-test-env) with its own defaults,
including `makedirs` (which walks the path from `/` down, as many SFTP
libraries do)."""

from __future__ import annotations

import asyncio
import posixpath
import stat

import asyncssh
import pytest

from cells import matrix
from support import Entry, join, run_job

STEP_TIMEOUT = 120


class AsyncSsh:
    """The job's steps, each run to completion on one event loop that keeps
    the connection between steps."""

    def __init__(self, loop, sftp):
        self.loop = loop
        self.sftp = sftp

    def _run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT))

    def upload(self, tree, remote):
        async def go():
            # makedirs with absolute paths, as applications usually call it:
            # asyncssh walks them from / down, checking each parent.
            home = await self.sftp.realpath(".")
            leaves = [d for d in tree.dirs if not any(o.startswith(d + "/") for o in tree.dirs)]
            for leaf in leaves:
                await self.sftp.makedirs(posixpath.join(home, remote, leaf))
            for rel in tree.files:
                await self.sftp.put(str(tree.root / rel), join(remote, rel))

        self._run(go())

    def listdirs(self, remotes):
        async def go():
            out = {}
            for r in remotes:
                names = await self.sftp.readdir(r or ".")
                out[r] = [
                    Entry(n.filename, n.attrs.size, stat.S_ISDIR(n.attrs.permissions or 0))
                    for n in names
                    if n.filename not in (".", "..")
                ]
            return out

        return self._run(go())

    def download(self, remote, local, tree):
        self._run(self.sftp.get(remote, str(local), recurse=True))

    def rename(self, old, new):
        self._run(self.sftp.rename(old, new))

    def delete(self, files, dirs):
        async def go():
            for f in files:
                await self.sftp.remove(f)
            for d in dirs:
                await self.sftp.rmdir(d)

        self._run(go())


@pytest.mark.parametrize("cell", matrix("asyncssh"))
def test_asyncssh(cell, env):
    options = dict(
        port=env.sftp_port,
        username=env.user,
        known_hosts=str(env.known_hosts()),
        agent_path=None,
        connect_timeout=20,
        login_timeout=20,
    )
    if cell.login == "key":
        options.update(client_keys=[str(env.keys.client_private)], password=None)
    else:
        options.update(client_keys=None, password=env.password)
    loop = asyncio.new_event_loop()
    conn = sftp = None
    try:
        conn = loop.run_until_complete(asyncio.wait_for(asyncssh.connect("127.0.0.1", **options), 30))
        sftp = loop.run_until_complete(asyncio.wait_for(conn.start_sftp_client(), 30))
        run_job(AsyncSsh(loop, sftp), env.tree, env.work)
    finally:
        if sftp is not None:
            sftp.exit()
        if conn is not None:
            conn.close()
            loop.run_until_complete(asyncio.wait_for(conn.wait_closed(), 10))
        loop.close()
