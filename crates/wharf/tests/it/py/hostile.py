"""Hostile SFTP clients, built on paramiko's transport with raw SFTP packets.

Usage: hostile.py PORT USER PASSWORD ATTACK [ARGS...]

Attacks:
  stuck-reads PATH CHANNELS READS
      Opens CHANNELS sftp channels with a tiny SSH window, opens PATH on
      each, sends READS reads of 255 KiB on each without ever reading a
      reply (so the server's window stays shut), then drops the TCP
      connection without closing anything. Prints "sent N" when done.
  abandoned-get PATH BYTES
      paramiko's ordinary get(), abandoned after BYTES bytes: the socket is
      closed under it.
  many-handles PATH COUNT
      Opens PATH COUNT times over two connections (half each) and keeps
      them open; prints "opened N" and the first error ("refused: ...");
      then closes one and opens again ("reopened").
"""

import socket
import struct
import sys

import paramiko

PORT, USER, PASSWORD, ATTACK = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ARGS = sys.argv[5:]

FXP_INIT, FXP_OPEN, FXP_READ = 1, 3, 5
FXP_VERSION, FXP_STATUS, FXP_HANDLE = 2, 101, 102
FXF_READ = 1


def packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


def string(data):
    return struct.pack(">I", len(data)) + data


def recv_packet(channel):
    def exactly(n):
        out = b""
        while len(out) < n:
            chunk = channel.recv(n - len(out))
            if not chunk:
                raise EOFError("channel closed")
            out += chunk
        return out

    (length,) = struct.unpack(">I", exactly(4))
    body = exactly(length)
    return body[0], body[1:]


def connect():
    sock = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    transport = paramiko.Transport(sock)
    transport.connect(username=USER, password=PASSWORD)
    return sock, transport


def stuck_reads(path, channels, reads):
    sock, transport = connect()
    sent = 0
    for _ in range(int(channels)):
        # A 64 KiB window: the version and handle replies fit, nothing more.
        channel = transport.open_session(window_size=65536, max_packet_size=32768)
        channel.invoke_subsystem("sftp")
        channel.sendall(packet(FXP_INIT, struct.pack(">I", 3)))
        kind, _ = recv_packet(channel)
        assert kind == FXP_VERSION, kind
        channel.sendall(
            packet(FXP_OPEN, struct.pack(">I", 1) + string(path.encode()) + struct.pack(">I", FXF_READ) + struct.pack(">I", 0))
        )
        kind, body = recv_packet(channel)
        assert kind == FXP_HANDLE, (kind, body)
        (length,) = struct.unpack(">I", body[4:8])
        handle = body[8 : 8 + length]
        for i in range(int(reads)):
            request = struct.pack(">I", 2 + i) + string(handle) + struct.pack(">QI", 0, 261120)
            channel.sendall(packet(FXP_READ, request))
            sent += 1
    print(f"sent {sent}", flush=True)
    # Gone, without a word: no CHANNEL_CLOSE, no DISCONNECT.
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def abandoned_get(path, limit):
    sock, transport = connect()
    sftp = paramiko.SFTPClient.from_transport(transport)
    got = 0

    def progress(done, _total):
        nonlocal got
        got = done
        if done >= int(limit):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            raise ConnectionAbortedError("abandoned")

    try:
        sftp.get(path, "/dev/null", callback=progress)
    except Exception:  # noqa: BLE001 - the point is to give up half-way
        pass
    print(f"abandoned after {got}", flush=True)


def many_handles(path, count):
    sessions = []
    for _ in range(2):
        _, transport = connect()
        sessions.append(paramiko.SFTPClient.from_transport(transport))
    opened, refused = [], None
    for i in range(int(count)):
        try:
            opened.append(sessions[i % 2].open(path, "rb"))
        except IOError as error:
            refused = str(error)
            break
    print(f"opened {len(opened)}", flush=True)
    print(f"refused: {refused}", flush=True)
    opened.pop().close()
    opened.append(sessions[0].open(path, "rb"))
    print("reopened", flush=True)


if ATTACK == "stuck-reads":
    stuck_reads(*ARGS)
elif ATTACK == "abandoned-get":
    abandoned_get(*ARGS)
elif ATTACK == "many-handles":
    many_handles(*ARGS)
else:
    raise SystemExit(f"unknown attack {ATTACK}")
