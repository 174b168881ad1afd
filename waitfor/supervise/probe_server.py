"""`--probe-addr HOST:PORT`: a small HTTP endpoint for Kubernetes httpGet probes.

- /livez    200 while the supervisor and the app run (and during the wait), else 503
- /readyz   200 once the app runs and no watched dependency is failing, else 503
- /startupz 200 once every dependency was ready and the app was started, else 503

Responses are short JSON made of names and states only, never targets or reasons,
so no secret can leak through an unauthenticated port.
"""

import json
import socket
import threading


def serve(addr, status, log):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        timeout = 5  # an idle connection to this unauthenticated port must not pin a thread

        def do_GET(self):
            snap = status.snapshot()
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                ok = snap["live"]
            elif path == "/readyz":
                ok = snap["ready"]
            elif path == "/startupz":
                ok = snap["started"]
            else:
                self._reply(404, {"error": "not found", "paths": ["/livez", "/readyz", "/startupz"]})
                return
            self._reply(200 if ok else 503, {"status": "ok" if ok else "fail", "phase": snap["phase"],
                                             "failing": snap["failing"]})

        do_HEAD = do_GET

        def _reply(self, code, body):
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, *args):
            pass  # probes every few seconds would flood the app's log

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET

        def server_bind(self):
            # HTTPServer.server_bind calls socket.getfqdn(), a resolver lookup, before the
            # wait, possibly while DNS is not up yet; the name is only used in CGI.
            import socketserver

            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = addr[0], self.server_address[1]

    try:
        server = Server(addr, Handler)
    except OSError as e:
        from waitfor.errors import UsageError

        raise UsageError(f"--probe-addr {addr[0]}:{addr[1]}: cannot listen: {e.strerror}") from None
    threading.Thread(target=server.serve_forever, name="probe-addr", daemon=True).start()
    log.debug(f"serving /livez /readyz /startupz on {addr[0]}:{addr[1]}")
    return server
