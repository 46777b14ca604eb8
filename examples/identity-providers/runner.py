#!/usr/bin/env python3
"""Serve an AWS Transfer Family identity provider handler to wharf.

Standard library only. Loads any Lambda-style handler (``--handler
module:function``, where module may also be a path to a .py file) and
serves it on the contract of each wharf identity provider type:

* ``lambda``:      POST /2015-03-31/functions/function/invocations (or POST /)
                   with the event as the body; answers the handler's return
                   value, like the AWS Lambda runtime interface emulator
                   (a handler that raises answers 200 with
                   X-Amz-Function-Error: Unhandled and errorType/errorMessage).
* ``api_gateway``: GET /servers/{serverId}/users/{username}/config
                   ?protocol=..&sourceIp=.. with the password in header
                   Password or PasswordBase64 (none: a key login), mapped to
                   the same event as AWS's API Gateway template does.
* ``command``:     ``runner.py --command --handler ...`` reads the event on
                   stdin and prints the response on stdout (anything the
                   handler prints goes to stderr); exit 1 if it raises.

The server binds 127.0.0.1. ``--port 0`` picks a free port; the first line
on stdout is always ``listening on http://127.0.0.1:PORT``.
"""

import argparse
import base64
import binascii
import contextlib
import importlib
import importlib.util
import json
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 1024 * 1024
INVOKE_PATHS = ("/", "/2015-03-31/functions/function/invocations")


class LambdaContext:
    """The parts of the AWS Lambda context object handlers tend to use."""

    def __init__(self, function_name, timeout):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            "arn:aws:lambda:us-east-1:000000000000:function:" + function_name
        )
        self.memory_limit_in_mb = "128"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/" + function_name
        self.log_stream_name = "wharf-runner"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec):
    module_name, sep, function_name = spec.rpartition(":")
    if not sep or not module_name or not function_name:
        raise SystemExit(f"--handler must be module:function, got {spec!r}")
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        name = os.path.splitext(os.path.basename(path))[0]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise SystemExit(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.path.insert(0, os.path.dirname(path))
        loader_spec.loader.exec_module(module)
    else:
        # Like Lambda: the handler's module is found from the working
        # directory (and next to this runner, for the bundled example).
        sys.path.insert(0, os.getcwd())
        sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
        module = importlib.import_module(module_name)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise SystemExit(f"{module_name} has no function {function_name}")
    return handler


def masked(event):
    if not isinstance(event, dict) or "password" not in event:
        return event
    return {**event, "password": "***"}


class Runner:
    def __init__(self, handler, name, timeout, log_events):
        self.handler = handler
        self.name = name
        self.timeout = timeout
        self.log_events = log_events

    def invoke(self, event):
        if self.log_events:
            print("event: " + json.dumps(masked(event)), file=sys.stderr, flush=True)
        # Whatever the handler prints is its log, never the answer.
        with contextlib.redirect_stdout(sys.stderr):
            return self.handler(event, LambdaContext(self.name, self.timeout))


def make_server(runner, host, port):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "wharf-idp-runner"

        def setup(self):
            super().setup()
            # Headers and body go out in two writes; without TCP_NODELAY the
            # second waits for the client's delayed ACK (about 40 ms a login).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format, *args):  # request lines only, never headers
            sys.stderr.write("runner: " + (format % args) + "\n")

        def reply(self, status, value, headers=()):
            body = json.dumps(value).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, text in headers:
                self.send_header(name, text)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                return self.reply(413, {"message": "request too large"})
            body = self.rfile.read(length)
            if path not in INVOKE_PATHS:
                return self.reply(404, {"message": f"no route POST {path}"})
            try:
                event = json.loads(body or b"{}")
            except ValueError as error:
                return self.reply(400, {"message": f"the event is not JSON: {error}"})
            try:
                result = runner.invoke(event)
            except Exception as error:  # the runtime interface emulator's shape
                traceback.print_exc()
                return self.reply(
                    200,
                    {
                        "errorMessage": str(error),
                        "errorType": type(error).__name__,
                        "stackTrace": traceback.format_tb(error.__traceback__),
                    },
                    [("X-Amz-Function-Error", "Unhandled")],
                )
            self.reply(200, result)

        def do_GET(self):
            url = urlsplit(self.path)
            # Split the raw path before decoding, so %2F stays inside a
            # segment; any prefix (a stage such as /prod) is allowed.
            parts = url.path.split("/")[-5:]
            if len(parts) != 5 or parts[0] != "servers" or parts[2] != "users" or parts[4] != "config":
                return self.reply(404, {"message": f"no route GET {url.path}"})
            query = parse_qs(url.query)
            event = {"username": unquote(parts[3])}
            password = self.headers.get("Password")
            encoded = self.headers.get("PasswordBase64")
            if encoded is not None:
                try:
                    password = base64.b64decode(encoded, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    return self.reply(400, {"message": "PasswordBase64 is not base64 of UTF-8"})
            if password is not None:
                event["password"] = password
            event["protocol"] = query.get("protocol", [""])[0]
            event["serverId"] = unquote(parts[1])
            event["sourceIp"] = query.get("sourceIp", [""])[0]
            try:
                result = runner.invoke(event)
            except Exception:
                traceback.print_exc()
                return self.reply(502, {"message": "Internal server error"})
            self.reply(200, result)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def run_command(runner):
    try:
        event = json.load(sys.stdin)
    except ValueError as error:
        print(f"runner: the event on stdin is not JSON: {error}", file=sys.stderr)
        return 1
    try:
        result = runner.invoke(event)
    except Exception:
        traceback.print_exc()
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def main():
    sys.dont_write_bytecode = True  # leave no __pycache__ beside the handler
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handler", default="handler:lambda_handler", help="module:function (module may be a .py path)")
    parser.add_argument("--port", type=int, default=9001, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--command", action="store_true", help="read one event on stdin, print the response, exit")
    parser.add_argument("--timeout", type=float, default=5.0, help="what context.get_remaining_time_in_millis() counts down from, in seconds")
    parser.add_argument("--log-events", action="store_true", help="print each event (password masked) to stderr")
    args = parser.parse_args()

    handler = load_handler(args.handler)
    runner = Runner(handler, args.handler.rpartition(":")[0].rsplit("/", 1)[-1], args.timeout, args.log_events)
    if args.command:
        return run_command(runner)

    server = make_server(runner, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
