"""Clients that test wharf's defences against the open internet.

Usage: defences.py COMMAND ARGS...

  ftp-guess PORT USER COUNT BIND
      COUNT connections from address BIND, each trying one wrong password
      over plain FTP (USER "*": a different unknown user each time). Prints "refused-at N" for the first connection that
      got no greeting (closed at accept), with "after S seconds", or
      "never-refused".
  ftp-login PORT USER PASSWORD BIND
      One login; prints "ok", "denied" or "refused" (closed at accept).
  silent PORT COUNT BIND
      Opens COUNT TCP connections from BIND that never send a byte, and
      prints "open K closed-at-once M" (those the server closed at once).
      BIND "spread": one from each address of 127.2.0.0/16, not checked
      for closing ("open" counts every connection made).
      Then reads commands on stdin until EOF: "login SFTP_PORT USER PASSWORD"
      times a paramiko login from 127.0.0.1 and prints "login-ms T".
      The connections stay open until stdin closes.
  ftp-stalled PORT USER PASSWORD COMMAND
      Logs in over plain FTP, opens a passive data connection for COMMAND
      ("STOR name" or "RETR name") and then neither sends nor reads a byte;
      prints the final reply the server sends on the control connection.
  password-storm PORT COUNT USER PASSWORD
      COUNT concurrent plain FTP logins, each an unknown user with a wrong
      password, from 127.0.0.10 up (32 per address, the cap on connections
      not logged in); once all are connected and waiting for their PASS
      reply, logs USER in with PASSWORD from 127.0.0.9 and times it. Prints
      "storm denied D busy B refused R login LOGIN login-ms T seconds S".
  waits-for-close PORT BIND SECONDS
      Connects from BIND, sends nothing, and prints "closed-after S" when
      the server closes the connection (or "still-open" after SECONDS).
"""

import socket
import sys
import time

COMMAND = sys.argv[1]
ARGS = sys.argv[2:]


def connect(port, bind, timeout=10):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((bind, 0))
    s.connect(("127.0.0.1", int(port)))
    return s


def read_reply(s):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data.decode("utf-8", "replace")


def ftp_try(port, user, password, bind):
    """'refused' (closed before the greeting), 'ok' or 'denied'."""
    s = connect(port, bind)
    try:
        greeting = read_reply(s)
        if greeting is None:
            return "refused"
        s.sendall(f"USER {user}\r\n".encode())
        read_reply(s)
        s.sendall(f"PASS {password}\r\n".encode())
        reply = read_reply(s) or ""
        s.sendall(b"QUIT\r\n")
        return "ok" if reply.startswith("230") else "denied"
    except ConnectionResetError:
        return "refused"
    finally:
        s.close()


def ftp_guess(port, user, count, bind):
    """USER "*" tries a different (unknown) user each time."""
    start = time.monotonic()
    for i in range(1, int(count) + 1):
        name = f"nobody{i}" if user == "*" else user
        if ftp_try(port, name, f"wrong-{i}", bind) == "refused":
            print(f"refused-at {i} after {time.monotonic() - start:.3f} seconds", flush=True)
            return
    print("never-refused", flush=True)


def silent(port, count, bind):
    held, closed = [], 0
    for i in range(int(count)):
        if bind == "spread":
            # One per address of 127.2.0.0/16: a botnet, the hardest case
            # for the per-address cap. Not checked one by one (too slow).
            n = i
            try:
                held.append(connect(port, f"127.2.{n // 250}.{1 + n % 250}", timeout=5))
            except OSError:
                closed += 1
            continue
        try:
            s = connect(port, bind, timeout=5)
        except OSError:
            closed += 1
            continue
        s.settimeout(0.2)
        try:
            # A refused connection is closed at once: EOF (or a reset).
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
                s.close()
                continue
        except socket.timeout:
            pass  # open and silent, as wanted
        except OSError:
            closed += 1
            s.close()
            continue
        except BlockingIOError:
            pass
        held.append(s)
    print(f"open {len(held)} closed-at-once {closed}", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if parts and parts[0] == "login":
            import paramiko

            start = time.monotonic()
            transport = paramiko.Transport(("127.0.0.1", int(parts[1])))
            transport.connect(username=parts[2], password=parts[3])
            sftp = paramiko.SFTPClient.from_transport(transport)
            sftp.listdir(".")
            print(f"login-ms {1000 * (time.monotonic() - start):.0f}", flush=True)
            transport.close()
    for s in held:
        s.close()


def waits_for_close(port, bind, seconds):
    s = connect(port, bind, timeout=float(seconds))
    start = time.monotonic()
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
    except socket.timeout:
        print("still-open", flush=True)
        return
    except OSError:
        pass
    print(f"closed-after {time.monotonic() - start:.3f}", flush=True)


def ftp_stalled(port, user, password, command):
    import ftplib

    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", int(port), timeout=60)
    ftp.login(user, password)
    conn = ftp.transfercmd(command)
    # Hold the data connection, move nothing.
    start = time.monotonic()
    try:
        reply = ftp.getresp()
    except ftplib.Error as error:
        reply = str(error)
    print(f"{reply.split()[0]} after {time.monotonic() - start:.1f}", flush=True)
    conn.close()
    ftp.close()


def password_storm(port, count, user, password):
    import threading

    count = int(count)
    outcomes = []
    lock = threading.Lock()
    sent = threading.Barrier(count + 1, timeout=60)

    def guess(i):
        bind = f"127.0.0.{10 + i // 32}"
        outcome = "refused"
        s = None
        try:
            s = connect(port, bind, timeout=60)
            if read_reply(s) is not None:
                s.sendall(f"USER storm{i}\r\n".encode())
                read_reply(s)
                s.sendall(f"PASS wrong-{i}\r\n".encode())
        except OSError:
            pass
        try:
            sent.wait()
        except threading.BrokenBarrierError:
            pass
        try:
            if s is not None:
                reply = read_reply(s) or ""
                if reply.startswith("530"):
                    outcome = "denied"
                elif reply.startswith("421"):
                    outcome = "busy"
                elif reply:
                    outcome = "other:" + reply.strip()
        except OSError:
            pass
        finally:
            if s is not None:
                s.close()
        with lock:
            outcomes.append(outcome)

    start = time.monotonic()
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    sent.wait()
    login_start = time.monotonic()
    login = ftp_try(port, user, password, "127.0.0.9")
    login_ms = 1000 * (time.monotonic() - login_start)
    for t in threads:
        t.join()
    took = time.monotonic() - start
    tally = {k: outcomes.count(k) for k in ("denied", "busy", "refused")}
    others = [o for o in outcomes if o.startswith("other:")]
    print(
        f"storm denied {tally['denied']} busy {tally['busy']} refused {tally['refused']} "
        f"login {login} login-ms {login_ms:.0f} seconds {took:.2f}"
        + (f" others {others[:3]}" if others else ""),
        flush=True,
    )


if COMMAND == "ftp-guess":
    ftp_guess(*ARGS)
elif COMMAND == "ftp-login":
    print(ftp_try(*ARGS), flush=True)
elif COMMAND == "silent":
    silent(*ARGS)
elif COMMAND == "ftp-stalled":
    ftp_stalled(*ARGS)
elif COMMAND == "password-storm":
    password_storm(*ARGS)
elif COMMAND == "waits-for-close":
    waits_for_close(*ARGS)
else:
    raise SystemExit(f"unknown command {COMMAND}")
