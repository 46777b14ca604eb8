"""What every cell of the client compatibility suite shares: running a client
with a deadline, the local test tree, listings as the clients print them, and
the one job that every cell runs through its client.

The job (`run_job`), in the client's own terms:

1. upload the tree into a fresh directory `job` of the home directory;
2. list every directory of it and check the names and sizes the client
   reports;
3. download `job` back and compare every byte;
4. rename one file and check that the old name is gone;
5. delete everything it created (files, then directories, deepest first)
   and check that the home directory lists as empty.

Remote paths given to a client are relative to where a login starts (the
home directory for PATH users, `/` for LOGICAL ones); `""` is that
directory itself.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Protocol

KiB = 1024
MiB = 1024 * KiB

# The tree every cell uploads: sizes 0 B, 1 B, 4 KiB, 1 MiB (and 20 MiB in
# the cells that carry the big file), names with spaces and UTF-8, nested
# three levels deep, two branches.
TREE_FILES = {
    "empty": 0,
    "one.bin": 1,
    "a b.txt": 4 * KiB,
    "résumé.txt": 1 * MiB,
    "日本語/データ.bin": 4 * KiB,
    "日本語/sub dir/one-mib.bin": 1 * MiB,
    "日本語/sub dir/nested/four kib.bin": 4 * KiB,
    # A second branch: clients that walk the tree must climb back up.
    "другой каталог/one.bin": 1,
}
BIG_FILE = ("日本語/sub dir/nested/big 20MiB.bin", 20 * MiB)

JOB = "job"
RENAME_FROM = "日本語/データ.bin"
RENAME_TO = "日本語/データ 2.bin"


# --- running things ---------------------------------------------------------


def _tail(data: bytes | str | None, lines: int = 40) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    parts = data.rstrip("\n").split("\n")
    if len(parts) > lines:
        parts = [f"... ({len(parts) - lines} lines before)"] + parts[-lines:]
    return "\n".join(parts)


def describe(argv, rc, out, err, note="") -> str:
    shown = shlex.join(str(a) for a in argv)
    text = f"$ {shown}\n{note or f'exit status {rc}'}"
    if out:
        text += "\n--- stdout:\n" + _tail(out)
    if err:
        text += "\n--- stderr:\n" + _tail(err)
    return text


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the process we started and its own children (its process group,
    which it leads: it was started with start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(
    argv,
    *,
    timeout: float = 120,
    cwd=None,
    env: dict | None = None,
    input: bytes | str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Runs a client to completion within `timeout` seconds. On a timeout the
    process group is killed and the test fails with what it printed."""
    full_env = dict(os.environ)
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    if isinstance(input, str):
        input = input.encode()
    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(
            describe(argv, None, out, err, note=f"did not finish within {timeout:.0f} s (killed)")
        ) from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(describe(argv, proc.returncode, out, err))
    return result


def run_watched(
    argv,
    *,
    progress: Path | None,
    stall: float,
    timeout: float,
    cwd: Path,
    env: dict | None = None,
) -> None:
    """Runs a long transfer, failing as soon as the file `progress` (what the
    transfer writes, e.g. a local download) has not grown for `stall`
    seconds, or the whole run takes longer than `timeout`. Without
    `progress`, only the overall timeout applies."""
    full_env = dict(os.environ)
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    out_path, err_path = cwd / "watched.stdout", cwd / "watched.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    start = last_change = time.monotonic()
    last_size = -1
    note = None
    try:
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            size = progress.stat().st_size if progress and progress.exists() else -1
            if progress is None or size != last_size:
                last_size, last_change = size, now
            elif now - last_change > stall:
                note = (
                    f"stalled: {progress.name} stayed at {max(size, 0):,} bytes for "
                    f"{stall:.0f} s ({now - start:.0f} s into the transfer; killed)"
                )
                break
            if now - start > timeout:
                note = f"did not finish within {timeout:.0f} s at {max(size, 0):,} bytes (killed)"
                break
    finally:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    if note or proc.returncode != 0:
        raise AssertionError(
            describe(argv, proc.returncode, out_path.read_bytes(), err_path.read_bytes(), note=note or "")
        )


def poll_until(what: str, fn, timeout: float = 30.0, interval: float = 0.05):
    """Calls `fn` until it returns something true, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- the local tree -----------------------------------------------------------


@dataclass
class Tree:
    root: Path
    files: dict[str, int]  # relative path -> size

    @property
    def dirs(self) -> list[str]:
        """Every directory below the root, parents first."""
        out = set()
        for rel in self.files:
            parent = PurePosixPath(rel).parent
            while str(parent) != ".":
                out.add(str(parent))
                parent = parent.parent
        return sorted(out, key=lambda d: (d.count("/"), d))

    def data(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def digest(self, rel: str) -> str:
        return sha256_file(self.root / rel)

    def children(self, rel_dir: str) -> dict[str, int | None]:
        """Names directly in `rel_dir` ("" = the root): size for a file,
        None for a directory."""
        out: dict[str, int | None] = {}
        prefix = rel_dir + "/" if rel_dir else ""
        for rel, size in self.files.items():
            if not rel.startswith(prefix):
                continue
            rest = rel[len(prefix):]
            head, sep, _ = rest.partition("/")
            out[head] = None if sep else size
        return out

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_tree(root: Path, *, big: bool, seed: int = 20251105) -> Tree:
    """Writes the test tree under `root`: random bytes from a fixed seed,
    so every run uploads the same data."""
    files = dict(TREE_FILES)
    if big:
        files[BIG_FILE[0]] = BIG_FILE[1]
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}:{rel}")
        path.write_bytes(rng.randbytes(size))
    return Tree(root, files)


def write_random(path: Path, size: int, seed: int = 7) -> None:
    """A large random file, written in 1 MiB pieces."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(rng.randbytes(n))
            left -= n


# --- listings -----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    size: int | None  # None when the client does not say
    is_dir: bool | None  # None when the client does not say


_LONG_LINE = re.compile(
    r"^(?P<mode>[-dlcbps][-rwxsStT]{9}\S*)\s+"
    r"(?:(?P<middle>.*?)\s+)?"
    r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(?P<day>\d{1,2})\s+"
    r"(?P<time>\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)


def parse_long_listing(text: str) -> list[Entry]:
    """Lines in `ls -l` form, as OpenSSH `sftp ls -ln`, the server's SFTP
    longname (psftp, pscp -ls, curl sftp), FTP LIST and lftp's `cls -l`
    print them: MODE [LINKS OWNER GROUP] [SIZE] MONTH DAY TIME|YEAR NAME.
    The size is the last number before the date (lftp leaves it out for
    directories)."""
    entries = []
    for line in text.splitlines():
        m = _LONG_LINE.match(line.rstrip("\r"))
        if not m:
            continue
        name = m["name"]
        if name in (".", ".."):
            continue
        middle = (m["middle"] or "").split()
        size = int(middle[-1]) if middle and middle[-1].isdigit() else None
        entries.append(Entry(name, size, m["mode"].startswith("d")))
    return entries


def _fmt_children(children: dict[str, int | None]) -> str:
    return ", ".join(
        f"{name!r}/" if size is None else f"{name!r}={size}" for name, size in sorted(children.items())
    )


def check_listing(remote_dir: str, entries: list[Entry], expected: dict[str, int | None]) -> None:
    """The names the client listed in `remote_dir` are exactly `expected`,
    files with their sizes (and types, where the client reports them)."""
    got: dict[str, int | None] = {}
    problems = []
    for e in entries:
        if e.name in got:
            problems.append(f"{e.name!r} listed twice")
        if e.is_dir:
            got[e.name] = None
        else:
            got[e.name] = e.size
    want_names, got_names = set(expected), set(got)
    if want_names != got_names:
        missing = sorted(want_names - got_names)
        extra = sorted(got_names - want_names)
        problems.append(f"missing {missing}, unexpected {extra}")
    for name in sorted(want_names & got_names):
        want = expected[name]
        entry = next(e for e in entries if e.name == name)
        if want is None:
            if entry.is_dir is False:
                problems.append(f"{name!r} is a directory, listed as a file")
        else:
            if entry.is_dir:
                problems.append(f"{name!r} is a file, listed as a directory")
            elif entry.size is not None and entry.size != want:
                problems.append(f"{name!r}: size {entry.size}, expected {want}")
    if problems:
        raise AssertionError(
            f"listing of {remote_dir!r}: " + "; ".join(problems) + f"\n  expected: {_fmt_children(expected)}"
            f"\n  listed:   {_fmt_children(got)}"
        )


def compare_download(tree: Tree, local: Path, renamed: dict[str, str] | None = None) -> None:
    """`local` holds exactly the tree's files, byte for byte."""
    renamed = renamed or {}
    want = {renamed.get(rel, rel): rel for rel in tree.files}
    got = set()
    for dirpath, _dirs, names in os.walk(local):
        for name in names:
            got.add(str(PurePosixPath(Path(dirpath, name).relative_to(local))))
    if got != set(want):
        raise AssertionError(
            f"downloaded files differ: missing {sorted(set(want) - got)}, unexpected {sorted(got - set(want))}"
        )
    for rel, source in sorted(want.items()):
        path = local / rel
        size = path.stat().st_size
        if size != tree.files[source]:
            raise AssertionError(f"downloaded {rel!r}: {size} bytes, expected {tree.files[source]}")
        if sha256_file(path) != tree.digest(source):
            raise AssertionError(f"downloaded {rel!r}: same size, different bytes")


# --- the job --------------------------------------------------------------------


class Client(Protocol):
    def upload(self, tree: Tree, remote: str) -> None: ...
    def listdirs(self, remotes: list[str]) -> dict[str, list[Entry]]: ...
    def download(self, remote: str, local: Path, tree: Tree) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def delete(self, files: list[str], dirs: list[str]) -> None: ...


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


@contextmanager
def step(name: str):
    """Names the step of the job in a failure message."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"step '{name}' failed:\n{e}") from None
    except Exception as e:  # a client library's own exception
        raise AssertionError(f"step '{name}' failed: {type(e).__module__}.{type(e).__name__}: {e}") from None


def run_job(client: Client, tree: Tree, work: Path, job: str = JOB) -> None:
    """The five steps of the module docstring, through `client`."""
    with step("upload"):
        client.upload(tree, job)
    with step("list"):
        dirs = [job] + [join(job, d) for d in tree.dirs]
        listed = client.listdirs(dirs)
        for rel in [""] + tree.dirs:
            remote = join(job, rel)
            check_listing(remote, listed.get(remote, []), tree.children(rel))
    with step("download"):
        back = work / "back"
        client.download(job, back, tree)
        compare_download(tree, back)
    with step("rename"):
        old, new = join(job, RENAME_FROM), join(job, RENAME_TO)
        client.rename(old, new)
        parent = str(PurePosixPath(new).parent)
        entries = client.listdirs([parent])[parent]
        names = {e.name: e for e in entries}
        old_name, new_name = PurePosixPath(old).name, PurePosixPath(new).name
        if old_name in names:
            raise AssertionError(f"{old!r} is still listed after the rename: {sorted(names)}")
        if new_name not in names:
            raise AssertionError(f"{new!r} is not listed after the rename: {sorted(names)}")
        size = names[new_name].size
        if size is not None and size != tree.files[RENAME_FROM]:
            raise AssertionError(f"{new!r}: size {size} after the rename, expected {tree.files[RENAME_FROM]}")
    with step("delete"):
        files = [join(job, RENAME_TO if rel == RENAME_FROM else rel) for rel in tree.files]
        dirs = [join(job, d) for d in deepest_first(tree.dirs)] + [job]
        client.delete(files, dirs)
    with step("list the emptied home"):
        entries = client.listdirs([""])[""]
        if entries:
            raise AssertionError(f"the home directory still lists {[e.name for e in entries]}")


def deepest_first(dirs: Iterable[str]) -> list[str]:
    return sorted(dirs, key=lambda d: -d.count("/"))
