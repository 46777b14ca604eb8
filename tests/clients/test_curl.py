"""curl over SFTP (libssh2) and over FTPS (explicit TLS, `--ssl-reqd -k`).

curl moves one file per URL, so every step is a loop over the tree's files:
one curl process per step, each file a `-T FILE URL` (or `URL -o FILE`)
pair on its command line, over one connection that curl reuses. Renames and
deletes are quote commands (`-Q`)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from cells import matrix
from support import parse_long_listing, run, run_job


def url_path(rel: str) -> str:
    return "/".join(quote(segment, safe="") for segment in rel.split("/")) if rel else ""


def quoted(path: str) -> str:
    """An argument of a curl SFTP quote command."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Curl:
    """What the two protocols share; `base`, `auth`, `quote_rename` and
    `quote_delete` differ."""

    def __init__(self, env):
        self.env = env

    def curl(self, *args: str, timeout: float = 180) -> str:
        out = run(["curl", "-sS", "--connect-timeout", "20", *self.auth(), *args], cwd=self.env.work, timeout=timeout)
        return out.stdout.decode("utf-8", "replace")

    def url(self, rel: str, directory: bool = False) -> str:
        path = url_path(rel)
        return self.base() + path + ("/" if directory and path else "")

    def upload(self, tree, remote):
        args = ["--ftp-create-dirs"]
        for rel in tree.files:
            args += ["-T", str(tree.root / rel), self.url(f"{remote}/{rel}")]
        self.curl(*args)

    def listdirs(self, remotes):
        args = []
        outputs = []
        for i, r in enumerate(remotes):
            outputs.append(self.env.work / f"listing-{i}")
            args += [self.url(r, directory=True), "-o", str(outputs[-1])]
        self.curl(*args)
        return {r: parse_long_listing(o.read_text(errors="replace")) for r, o in zip(remotes, outputs)}

    def download(self, remote, local, tree):
        args = ["--create-dirs"]
        for rel in tree.files:
            args += [self.url(f"{remote}/{rel}"), "-o", str(local / rel)]
        self.curl(*args)

    def rename(self, old, new):
        self.curl(*self.quote_rename(old, new), self.url("", directory=True), "-o", "/dev/null")

    def delete(self, files, dirs):
        self.curl(*self.quote_delete(files, dirs), self.url("", directory=True), "-o", "/dev/null")


class CurlSftp(Curl):
    def base(self) -> str:
        # /~/ is the home directory (the start directory of a LOGICAL user is /).
        return f"sftp://127.0.0.1:{self.env.sftp_port}/~/"

    def auth(self) -> list[str]:
        # -k: no known_hosts check (there is no known_hosts file for libssh2 to read).
        if self.env.cell.login == "key":
            return ["-k", "-u", f"{self.env.user}:", "--key", str(self.env.keys.client_private),
                    "--pubkey", str(self.env.keys.client_public)]  # fmt: skip
        return ["-k", "-u", f"{self.env.user}:{self.env.password}"]

    def quote_rename(self, old, new):
        return ["-Q", f"rename {quoted(self.env.remote_abs(old))} {quoted(self.env.remote_abs(new))}"]

    def quote_delete(self, files, dirs):
        args = []
        for f in files:
            args += ["-Q", f"rm {quoted(self.env.remote_abs(f))}"]
        for d in dirs:
            args += ["-Q", f"rmdir {quoted(self.env.remote_abs(d))}"]
        return args


@pytest.mark.parametrize("cell", matrix("curl-sftp"))
def test_curl_sftp(cell, env):
    run_job(CurlSftp(env), env.tree, env.work)


class CurlFtps(Curl):
    """Downloads and listings run many per command over TLS 1.3. Uploads
    also run many per command, but with `--tls-max 1.2`: with TLS 1.3, curl
    (OpenSSL) keeps the session of the data connection that resumed, which
    cannot be resumed again, and an upload's data connection cannot be given
    a fresh ticket (the client never reads it, and unread data at close
    resets the connection and loses the end of the upload), so a second
    upload in the same command is refused under the default
    `tls_session_resumption = "enforced"` (vsftpd and ProFTPD refuse it
    too: curl/curl#4654). `test_curl_ftps_uploads_one_per_command` checks
    that one upload per command works over TLS 1.3."""

    def upload(self, tree, remote):
        args = ["--tls-max", "1.2", "--ftp-create-dirs"]
        for rel in tree.files:
            args += ["-T", str(tree.root / rel), self.url(f"{remote}/{rel}")]
        self.curl(*args)

    def base(self) -> str:
        # Paths are relative to where the login starts (the home for PATH).
        return f"ftp://127.0.0.1:{self.env.ftps_port}/"

    def auth(self) -> list[str]:
        return ["--ssl-reqd", "-k", "-u", f"{self.env.user}:{self.env.password}"]

    def quote_rename(self, old, new):
        return ["-Q", f"RNFR {old}", "-Q", f"RNTO {new}"]

    def quote_delete(self, files, dirs):
        args = []
        for f in files:
            args += ["-Q", f"DELE {f}"]
        for d in dirs:
            args += ["-Q", f"RMD {d}"]
        return args


@pytest.mark.parametrize("cell", matrix("curl-ftps", logins=("password",)))
def test_curl_ftps(cell, env):
    run_job(CurlFtps(env), env.tree, env.work)


@pytest.mark.parametrize("cell", matrix("curl-ftps-tls13", logins=("password",), stores=("s3",), homes=("PATH",)))
def test_curl_ftps_uploads_one_per_command(cell, env):
    """The usual scripted upload (a loop, one file per command) over TLS 1.3,
    then every file back in one command (a fresh ticket on each download's
    data connection keeps curl resuming)."""
    client = CurlFtps(env)
    for rel in env.tree.files:
        client.curl("--ftp-create-dirs", "-T", str(env.tree.root / rel), client.url(f"tls13/{rel}"))
    local = env.work / "tls13-back"
    client.download("tls13", local, env.tree)
    for rel in env.tree.files:
        assert (local / rel).read_bytes() == (env.tree.root / rel).read_bytes(), rel
