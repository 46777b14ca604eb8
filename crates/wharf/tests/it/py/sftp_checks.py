"""Finer SFTP operations against wharf with paramiko.

Usage: sftp_checks.py PORT USER PASSWORD CHECK...
Each CHECK is a function below; the script exits non-zero with a message
on the first failure and prints "ok CHECK" for each success.
"""

import errno
import io
import os
import socket
import struct
import sys
import threading
import time

import paramiko

PORT, USER, PASSWORD = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def connect():
    transport = paramiko.Transport(("127.0.0.1", PORT))
    transport.connect(username=USER, password=PASSWORD)
    return transport, paramiko.SFTPClient.from_transport(transport)


def expect_error(what, fn, *codes):
    try:
        fn()
    except IOError as error:
        if codes and error.errno not in codes:
            raise AssertionError(f"{what}: errno {error.errno} ({error}), expected {codes}")
        return error
    raise AssertionError(f"{what}: no error")


def data(n, seed=1):
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = x >> 16 & 0xFF
    return bytes(out)


def check_files(sftp):
    payload = os.urandom(5_000_000)
    sftp.putfo(io.BytesIO(payload), "big.bin")
    assert sftp.stat("big.bin").st_size == len(payload)
    with sftp.open("big.bin", "rb") as f:
        f.prefetch()
        got = f.read()
    assert got == payload, "prefetched read differs"
    with sftp.open("big.bin", "rb") as f:
        f.seek(1_234_567)
        assert f.read(1000) == payload[1_234_567:1_235_567]
        f.seek(len(payload) - 10)
        assert f.read(100) == payload[-10:]
        assert f.read(100) == b""
    with sftp.open("big.bin", "rb") as f:
        assert f.stat().st_size == len(payload)


def check_attributes(sftp):
    sftp.putfo(io.BytesIO(b"hello"), "attrs.txt")
    sftp.utime("attrs.txt", (1_000_000_000, 1_234_567_890))
    assert sftp.stat("attrs.txt").st_mtime == 1_234_567_890, sftp.stat("attrs.txt")
    sftp.chmod("attrs.txt", 0o600)  # accepted as a no-op
    sftp.chown("attrs.txt", 1, 1)  # accepted as a no-op
    expect_error("truncate", lambda: sftp.truncate("attrs.txt", 2))
    st = sftp.stat("/")
    assert st.st_mode & 0o040000, "root is not a directory"
    assert "attrs.txt" in sftp.listdir("/")
    attrs = {a.filename: a for a in sftp.listdir_attr(".")}
    assert attrs["attrs.txt"].st_size == 5
    assert "attrs.txt" in attrs["attrs.txt"].longname


def check_renames(sftp):
    sftp.putfo(io.BytesIO(b"a"), "a.txt")
    sftp.putfo(io.BytesIO(b"b"), "b.txt")
    expect_error("rename onto an existing file", lambda: sftp.rename("a.txt", "b.txt"))
    sftp.posix_rename("a.txt", "b.txt")
    with sftp.open("b.txt") as f:
        assert f.read() == b"a"
    expect_error("stat renamed-away", lambda: sftp.stat("a.txt"), errno.ENOENT)
    sftp.mkdir("dir1")
    sftp.putfo(io.BytesIO(b"x"), "dir1/x")
    sftp.rename("dir1", "dir2")
    assert sftp.listdir("dir2") == ["x"]


def check_errors(sftp):
    expect_error("open missing", lambda: sftp.open("missing.txt", "r"), errno.ENOENT)
    sftp.putfo(io.BytesIO(b"keep"), "keep.txt")
    expect_error("open r+ (update in place)", lambda: sftp.open("keep.txt", "r+"))
    expect_error("append", lambda: sftp.open("keep.txt", "a"))
    with sftp.open("keep.txt") as f:
        assert f.read() == b"keep", "a refused open changed the file"
    expect_error("readlink", lambda: sftp.readlink("keep.txt"))
    expect_error("symlink", lambda: sftp.symlink("keep.txt", "link.txt"))
    sftp.mkdir("d")
    expect_error("mkdir existing", lambda: sftp.mkdir("d"))
    sftp.putfo(io.BytesIO(b"x"), "d/x")
    expect_error("rmdir non-empty", lambda: sftp.rmdir("d"))
    expect_error("remove a directory", lambda: sftp.remove("d"))
    expect_error("nul byte", lambda: sftp.stat("a\x00b"))
    expect_error("long segment", lambda: sftp.mkdir("x" * 300))
    expect_error("long path", lambda: sftp.stat("/" + "/".join(["y" * 200] * 6)))
    expect_error("exclusive create", lambda: sftp.open("keep.txt", "x"))
    expect_error("read a directory", lambda: sftp.open("d", "r").read())


def check_concurrency(sftp):
    # Many files written interleaved on one session, then read concurrently.
    files = [sftp.open(f"c{i}.bin", "wb") for i in range(16)]
    blobs = [data(300_000, seed=i + 1) for i in range(16)]
    for chunk in range(0, 300_000, 32_768):
        for f, blob in zip(files, blobs):
            f.write(blob[chunk:chunk + 32_768])
    for f in files:
        f.close()
    results = {}
    # paramiko's SFTPClient is not safe for concurrent prefetches from
    # several threads (it garbles packets against OpenSSH too), so each
    # thread gets its own SFTP channel on the same connection.
    transport = sftp.get_channel().get_transport()

    def read(i):
        client = paramiko.SFTPClient.from_transport(transport)
        try:
            for n in (i, i + 8):
                with client.open(f"c{n}.bin", "rb") as f:
                    f.prefetch()
                    results[n] = f.read()
        finally:
            client.close()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, blob in enumerate(blobs):
        assert results[i] == blob, f"file {i} differs"


def raw_channel(transport):
    channel = transport.open_session()
    channel.invoke_subsystem("sftp")
    channel.sendall(struct.pack(">IBI", 5, 1, 3))
    header = channel.recv(4)
    (length,) = struct.unpack(">I", header)
    version = channel.recv(length)
    assert version[0] == 2, version
    channel.settimeout(10)
    return channel


def closed(channel):
    try:
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                return True
    except socket.timeout:
        return False


def check_malformed(sftp):
    transport = sftp.get_channel().get_transport()
    # An oversized packet closes that channel only.
    channel = raw_channel(transport)
    channel.sendall(struct.pack(">I", 0x7FFFFFFF) + b"\x03" + b"\x00" * 100)
    assert closed(channel), "oversized packet did not close the channel"
    # A truncated OPEN closes it too.
    channel = raw_channel(transport)
    body = struct.pack(">BII", 3, 7, 1000) + b"short"
    channel.sendall(struct.pack(">I", len(body)) + body)
    assert closed(channel), "malformed packet did not close the channel"
    # Unknown request types get OP_UNSUPPORTED and the channel lives on.
    channel = raw_channel(transport)
    body = struct.pack(">BI", 99, 42)
    channel.sendall(struct.pack(">I", len(body)) + body)
    (length,) = struct.unpack(">I", channel.recv(4))
    reply = channel.recv(length)
    kind, rid, code = struct.unpack(">BII", reply[:9])
    assert (kind, rid, code) == (101, 42, 8), (kind, rid, code)
    channel.close()
    # The original session still works.
    assert sftp.stat("/").st_mode & 0o040000


def check_flood(sftp):
    # Thousands of reads in flight: all answered, memory stays bounded.
    sftp.putfo(io.BytesIO(os.urandom(1_000_000)), "flood.bin")
    transport = sftp.get_channel().get_transport()
    channel = raw_channel(transport)
    name = b"/flood.bin"
    body = struct.pack(">BII", 3, 1, len(name)) + name + struct.pack(">II", 1, 0)
    channel.sendall(struct.pack(">I", len(body)) + body)
    (length,) = struct.unpack(">I", channel.recv(4))
    reply = b""
    while len(reply) < length:
        reply += channel.recv(length - len(reply))
    assert reply[0] == 102, reply
    (hlen,) = struct.unpack(">I", reply[5:9])
    handle = reply[9:9 + hlen]
    count = 3000
    requests = bytearray()
    for i in range(count):
        body = struct.pack(">BII", 5, 100 + i, len(handle)) + handle + struct.pack(">QI", (i * 65536) % 1_000_000, 261120)
        requests += struct.pack(">I", len(body)) + body
    sender = threading.Thread(target=channel.sendall, args=(bytes(requests),))
    sender.start()
    seen = set()
    buffer = b""
    channel.settimeout(60)
    while len(seen) < count:
        chunk = channel.recv(1 << 20)
        assert chunk, "channel closed during the flood"
        buffer += chunk
        while len(buffer) >= 4:
            (length,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 4 + length:
                break
            packet, buffer = buffer[4:4 + length], buffer[4 + length:]
            seen.add(struct.unpack(">I", packet[1:5])[0])
    sender.join()
    assert seen == set(range(100, 100 + count))
    channel.close()


def check_session_limit(sftp):
    other = paramiko.Transport(("127.0.0.1", PORT))
    try:
        other.connect(username=USER, password=PASSWORD)
    except paramiko.AuthenticationException:
        return
    finally:
        other.close()
    raise AssertionError("a second session was allowed")


def check_idle_timeout(sftp):
    transport = sftp.get_channel().get_transport()
    deadline = time.monotonic() + 30
    while transport.is_active():
        assert time.monotonic() < deadline, "the idle session was not closed"
        time.sleep(0.1)


CHECKS = {name[6:]: fn for name, fn in globals().items() if name.startswith("check_")}

if __name__ == "__main__":
    transport, sftp = connect()
    try:
        for name in sys.argv[4:]:
            CHECKS[name](sftp)
            print("ok", name, flush=True)
    finally:
        transport.close()
