"""Python's ftplib over explicit TLS (FTP_TLS, PROT P), as is, and
"FileZilla-style": every data connection resumes the control connection's
TLS session (what FileZilla, WinSCP and most FTPS clients do, and what
`tls_session_resumption = "enforced"`, the default, requires)."""

from __future__ import annotations

import ftplib
import ssl
from pathlib import Path

import pytest

from cells import matrix
from support import Entry, join, parse_long_listing, run_job


class ReusingFtpTls(ftplib.FTP_TLS):
    """The standard trick: data connections resume the control connection's
    TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def connect(env, cls) -> ftplib.FTP_TLS:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    ftp = cls(context=context, timeout=60)
    ftp.connect("127.0.0.1", env.ftps_port)
    ftp.login(env.user, env.password)  # AUTH TLS first
    ftp.prot_p()
    return ftp


class Ftplib:
    def __init__(self, ftp: ftplib.FTP_TLS):
        self.ftp = ftp
        features = ftp.sendcmd("FEAT")
        self.mlsd = "MLSD" in features.upper() or "MLST" in features.upper()

    def upload(self, tree, remote):
        self.ftp.mkd(remote)
        for d in tree.dirs:
            self.ftp.mkd(join(remote, d))
        for rel in tree.files:
            with open(tree.root / rel, "rb") as f:
                self.ftp.storbinary(f"STOR {join(remote, rel)}", f)

    def list(self, remote: str) -> list[Entry]:
        if self.mlsd:
            out = []
            for name, facts in self.ftp.mlsd(remote, facts=["type", "size"]):
                kind = facts.get("type", "").lower()
                if kind in ("cdir", "pdir"):
                    continue
                size = int(facts["size"]) if "size" in facts else None
                out.append(Entry(name, size, kind == "dir"))
            return out
        lines: list[str] = []
        self.ftp.retrlines(f"LIST {remote}" if remote else "LIST", lines.append)
        return parse_long_listing("\n".join(lines))

    def listdirs(self, remotes):
        return {r: self.list(r) for r in remotes}

    def download(self, remote, local: Path, tree):
        local.mkdir()
        for e in self.list(remote):
            if e.is_dir:
                self.download(join(remote, e.name), local / e.name, tree)
            else:
                with open(local / e.name, "wb") as f:
                    self.ftp.retrbinary(f"RETR {join(remote, e.name)}", f.write)

    def rename(self, old, new):
        self.ftp.rename(old, new)

    def delete(self, files, dirs):
        for f in files:
            self.ftp.delete(f)
        for d in dirs:
            self.ftp.rmd(d)


def job(env, cls):
    ftp = connect(env, cls)
    try:
        run_job(Ftplib(ftp), env.tree, env.work)
        ftp.quit()
    finally:
        ftp.close()


# ftplib as is never resumes a TLS session on its data connections, so the
# default `tls_session_resumption = "enforced"` refuses them (as AWS Transfer
# Family's ENFORCED does); it works where resumption is "enabled".
@pytest.mark.parametrize("cell", matrix("ftplib", logins=("password",), server="resumption-enabled"))
def test_ftplib_ftps(cell, env):
    job(env, ftplib.FTP_TLS)


@pytest.mark.parametrize("cell", matrix("ftplib-refused", logins=("password",), stores=("fs",), homes=("LOGICAL",)))
def test_ftplib_without_resumption_is_refused_clearly_when_enforced(cell, env):
    ftp = connect(env, ftplib.FTP_TLS)
    try:
        try:
            ftp.nlst()
            raise AssertionError("a data connection without resumption was accepted")
        except ftplib.error_perm as refused:
            reason = str(refused)
        except OSError:
            # The TLS handshake broke off first; the reply follows on the
            # control connection.
            with pytest.raises(ftplib.error_perm) as refused:
                ftp.getresp()
            reason = str(refused.value)
        assert reason.startswith("550") and "did not resume" in reason, reason
    finally:
        ftp.close()


@pytest.mark.parametrize("cell", matrix("ftplib-reuse", logins=("password",)))
def test_ftplib_ftps_filezilla_style(cell, env):
    job(env, ReusingFtpTls)
