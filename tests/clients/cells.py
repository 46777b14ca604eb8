"""The matrix of the client compatibility suite: a cell is one client x
store kind x home directory type x login method, with its own user."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Cell:
    client: str  # names the user too
    store: str  # "fs" | "s3"
    home: str  # "PATH" | "LOGICAL"
    login: str  # "password" | "key"
    big: bool = False  # the tree carries the 20 MiB file
    server: str = "main"  # "main" | "key-and-password" | "resumption-enabled"

    @property
    def user(self) -> str:
        return f"{self.client}-{self.store}-{self.home}-{self.login}".lower()

    @property
    def password(self) -> str:
        return "pw-" + hashlib.sha256(self.user.encode()).hexdigest()[:16]

    @property
    def store_home(self) -> str:
        """Where the user's files live: /STORE/users/NAME."""
        return f"/{self.store}/users/{self.user}"

    @property
    def start_dir(self) -> str:
        """The directory a login starts in, as the user sees it."""
        return self.store_home if self.home == "PATH" else "/"

    def user_add_args(self) -> list[str]:
        if self.home == "PATH":
            return ["--home-directory", self.store_home]
        return ["--home-directory-mapping", f"/={self.store_home}"]

    def __str__(self) -> str:
        return f"{self.store}-{self.home}-{self.login}" + ("-20MiB" if self.big else "")


def matrix(client: str, logins=("password", "key"), stores=("fs", "s3"), homes=("PATH", "LOGICAL"), big=None, server="main"):
    """pytest params for one client's cells. `big(store, home, login)` says
    which cells carry the 20 MiB file. By default two cells per client do:
    the S3 LOGICAL password cell (a multipart upload: 20 MiB is three
    parts of the default 8 MiB) and the filesystem PATH cell of the last
    login method; the other cells move the tree without it, which keeps the
    whole suite within a few minutes on a 2-core machine."""
    if big is None:

        def big(store, home, login):
            return (store, home, login) in (("s3", "LOGICAL", "password"), ("fs", "PATH", logins[-1]))

    out = []
    for store in stores:
        for home in homes:
            for login in logins:
                cell = Cell(client, store, home, login, big=big(store, home, login), server=server)
                out.append(pytest.param(cell, id=str(cell)))
    return out


