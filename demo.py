"""A self-contained demo of waitfor's main job, run by the README's first command.

A throwaway HTTP service starts listening 2 seconds from now on a free local port.
waitfor waits for it (probing a closed port every ~50 ms), then starts the "app", which
talks to the service. Exit code: the app's, as with waitfor in a container.
"""

import http.server
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_late(port: int, delay: float) -> None:
    def serve():
        time.sleep(delay)
        server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        print(f"demo: the dependency is listening on 127.0.0.1:{port} now", file=sys.stderr, flush=True)
        server.serve_forever()

    threading.Thread(target=serve, daemon=True).start()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status": "ok"}\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> int:
    port = free_port()
    print(f"demo: a dependency will start on 127.0.0.1:{port} in 2 s; waitfor waits for it", file=sys.stderr)
    start_late(port, 2.0)
    app = (
        "import urllib.request, sys; "
        f"body = urllib.request.urlopen('http://127.0.0.1:{port}/').read().decode().strip(); "
        "print('app: started; the dependency says', body)"
    )
    started = time.monotonic()
    code = subprocess.call([
        sys.executable, "-m", "waitfor", "run", "--timeout", "10s",
        f"http://127.0.0.1:{port}/", "--", sys.executable, "-c", app,
    ])
    print(f"demo: waitfor exited {code} after {time.monotonic() - started:.2f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
