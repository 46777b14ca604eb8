"""Runs SFTP operations with paramiko and checks each one's outcome.

Usage: ops.py PORT USER PASSWORD OP:PATH:EXPECT...
OP is put (paramiko putfo, which stats after the upload), get, download (paramiko getfo), ls, stat,
mkdir, rmdir, rm, mv or rename (PATH is FROM>TO); EXPECT is ok, denied (SFTP
permission denied), missing (no such file) or failed (any other error); for ls also =NAME,NAME
(the listing, sorted). Prints one line per operation; exits 1 if any outcome differs.
"""

import errno
import io
import sys

import paramiko

PORT, USER, PASSWORD = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def run(sftp, op, path):
    if op == "put":
        sftp.putfo(io.BytesIO(b"data for " + path.encode()), path)
    elif op == "get":
        with sftp.open(path, "rb") as f:
            f.read()
    elif op == "download":  # paramiko's get(): open, fstat, prefetch
        sftp.getfo(path, io.BytesIO())
    elif op == "ls":
        return "=" + ",".join(sorted(sftp.listdir(path)))
    elif op == "stat":
        sftp.stat(path)
    elif op == "mkdir":
        sftp.mkdir(path)
    elif op == "rmdir":
        sftp.rmdir(path)
    elif op == "rm":
        sftp.remove(path)
    elif op == "mv":  # PATH is FROM>TO: posix-rename@openssh.com
        source, target = path.split(">", 1)
        sftp.posix_rename(source, target)
    elif op == "rename":  # PATH is FROM>TO: SSH_FXP_RENAME
        source, target = path.split(">", 1)
        sftp.rename(source, target)
    else:
        raise ValueError(op)


def outcome(sftp, op, path, expected):
    try:
        listed = run(sftp, op, path)
        return listed if listed is not None and expected.startswith("=") else "ok"
    except PermissionError:
        return "denied"
    except FileNotFoundError:
        return "missing"
    except IOError as error:
        if error.errno == errno.EACCES:
            return "denied"
        if error.errno == errno.ENOENT:
            return "missing"
        return "failed"


def main():
    transport = paramiko.Transport(("127.0.0.1", PORT))
    transport.connect(username=USER, password=PASSWORD)
    sftp = paramiko.SFTPClient.from_transport(transport)
    failures = 0
    for spec in sys.argv[4:]:
        op, path, expected = spec.split(":", 2)
        got = outcome(sftp, op, path, expected)
        mark = "ok  " if got == expected else "FAIL"
        if got != expected:
            failures += 1
        print(f"{mark} {USER} {op} {path}: {got} (expected {expected})", flush=True)
    transport.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
