"""The app of the end-to-end tests, run inside the container as waitfor's child.

A small HTTP server (standard library only):
- GET /healthz answers 200, or 503 while /tmp/unhealthy exists (the tests toggle it with
  `podman exec`), so the HEALTHCHECK (`waitfor health`, an http check) follows the app.
- GET /info answers {"pid": ..., "ppid": ...}.
- SIGTERM: prints "app: got SIGTERM", writes /tmp/terminated, exits with --term-code.
- --delay N: listen only after N seconds (a slow database, for the compose test).
- --orphan: leave a short-lived grandchild behind, re-parented to PID 1 (reaping test).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            code = 503 if os.path.exists("/tmp/unhealthy") else 200
            body = b"unhealthy\n" if code == 503 else b"ok\n"
        elif self.path == "/info":
            code, body = 200, json.dumps({"pid": os.getpid(), "ppid": os.getppid()}).encode()
        else:
            code, body = 404, b"not found\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--delay", type=float, default=0)
    p.add_argument("--term-code", type=int, default=42)
    p.add_argument("--orphan", action="store_true")
    a = p.parse_args()

    def on_term(signum, frame):
        print("app: got SIGTERM", flush=True)
        with open("/tmp/terminated", "w") as f:
            f.write("TERM\n")
        os._exit(a.term_code)

    signal.signal(signal.SIGTERM, on_term)
    if a.orphan:
        # sh exits at once; its background sleep (2 s) is orphaned, re-parented to PID 1, and
        # becomes a zombie when it ends unless PID 1 reaps it.
        subprocess.run(["sh", "-c", "sleep 2 &"], check=True)
    if a.delay:
        print(f"app: starting in {a.delay:g}s", flush=True)
        time.sleep(a.delay)
    server = HTTPServer(("0.0.0.0", a.port), Handler)
    print(f"app: listening on {a.port} (pid {os.getpid()}, ppid {os.getppid()})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
