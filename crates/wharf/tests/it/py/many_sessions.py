"""One of the helper processes of `many_sessions.rs`: holds its share of
idle SFTP sessions (key login, sftp subsystem open) against one wharf.

    many_sessions.py PORT USER KEY COUNT IN_FLIGHT

Commands, one per line on stdin, each answered by one line on stdout:

    open           opens COUNT sessions, at most IN_FLIGHT logins at a time:
                   "opened N SECONDS" (or "failed N: ERROR" and exit 1)
    sample N       N held sessions, spread over all of them, each stat "."
                   and list "/": "sampled N" (or "failed ...")
    close          closes every held session and waits for each to end:
                   "closed SECONDS"

EOF closes whatever is held and exits. Every login, listing and close has a
deadline; nothing waits on a sleep.
"""

import asyncio
import resource
import sys
import time

import asyncssh

# Per operation; a login on a loaded 2-core machine takes milliseconds.
DEADLINE = 60


def raise_nofile():
    """Each session is a descriptor: the soft limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Holder:
    def __init__(self, port, user, key, count, in_flight):
        self.port = port
        self.user = user
        self.key = asyncssh.read_private_key(key)
        self.count = count
        self.in_flight = in_flight
        self.held = []  # (connection, sftp client)

    async def login(self):
        conn = await asyncssh.connect(
            "127.0.0.1",
            self.port,
            username=self.user,
            client_keys=[self.key],
            password=None,
            known_hosts=None,
            agent_path=None,
            config=[],
            preferred_auth="publickey",
        )
        try:
            sftp = await conn.start_sftp_client()
        except BaseException:
            conn.close()
            raise
        return conn, sftp

    async def open(self):
        start = time.monotonic()
        gate = asyncio.Semaphore(self.in_flight)

        async def one():
            async with gate:
                return await asyncio.wait_for(self.login(), DEADLINE)

        results = await asyncio.gather(
            *(one() for _ in range(self.count)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        self.held.extend(r for r in results if not isinstance(r, BaseException))
        if errors:
            return f"failed {len(errors)}: {errors[0]!r}"
        return f"opened {len(self.held)} {time.monotonic() - start:.2f}"

    async def sample(self, n):
        n = min(n, len(self.held))
        step = len(self.held) / n if n else 1
        chosen = [self.held[int(i * step)] for i in range(n)]

        async def use(sftp):
            attrs = await sftp.stat(".")
            names = await sftp.listdir("/")
            assert attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY, attrs
            assert "probe" in names, names

        results = await asyncio.gather(
            *(asyncio.wait_for(use(sftp), DEADLINE) for _, sftp in chosen),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            return f"failed {len(errors)} of {n}: {errors[0]!r}"
        return f"sampled {n}"

    async def close(self):
        start = time.monotonic()
        held, self.held = self.held, []
        for conn, sftp in held:
            sftp.exit()
            conn.close()
        await asyncio.wait_for(
            asyncio.gather(*(conn.wait_closed() for conn, _ in held)), DEADLINE
        )
        return f"closed {time.monotonic() - start:.2f}"


async def main():
    port, user, key, count, in_flight = sys.argv[1:6]
    raise_nofile()
    holder = Holder(int(port), user, key, int(count), int(in_flight))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    status = 0
    while line := (await reader.readline()).decode().split():
        if line[0] == "open":
            answer = await holder.open()
        elif line[0] == "sample":
            answer = await holder.sample(int(line[1]))
        elif line[0] == "close":
            answer = await holder.close()
        else:
            answer = f"failed: unknown command {line}"
        print(answer, flush=True)
        if answer.startswith("failed"):
            status = 1
            break
    await holder.close()
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
