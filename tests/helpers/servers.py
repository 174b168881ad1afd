"""Real servers for the driver and limits tests (test_drivers, test_limits): our own redis-server, mosquitto, nats-server,
PostgreSQL and MariaDB instances on free ports (so a test can start one late, or with a
password, without touching the machine's shared servers), an in-process gRPC health
server, and plain TCP listeners that accept but do not speak the protocol. No mocks.

Every process started here is started by us, stopped by its own pid, and waited for.
"""

import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from helpers.core import REPO, clean_env, free_port, spawn, waitfor

PG_BIN = Path("/usr/lib/postgresql")


def accepts(port: int, host="127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout=20.0, host="127.0.0.1", proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not accepts(port, host):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for port {port} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing accepts on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def shared_dir(owner=None) -> Path:
    """A temporary directory other users can enter (pytest's tmp_path is 0700 and root's),
    owned by `owner` when given: mosquitto drops to its own user, PostgreSQL and MariaDB
    refuse to run as root."""
    path = Path(tempfile.mkdtemp(prefix="waitfor-drivers-"))
    path.chmod(0o755)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def later(delay: float, fn, *args):
    """Call fn(*args) in a thread after `delay` seconds. Returns the thread; its `.error`
    holds an exception fn raised, so a test can assert the late action really happened."""

    def run():
        time.sleep(delay)
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - reported through .error
            t.error = e

    t = threading.Thread(target=run, daemon=True)
    t.error = None
    t.start()
    return t


class Proc:
    """A server process of ours, on `port`; start() can be called late (see `later`)."""

    def __init__(self, argv, port, *, user=None, cwd=None, log=None, env=None, stop_signal=None):
        self.argv, self.port, self.user, self.cwd, self.env = argv, port, user, cwd, env
        self.stop_signal = stop_signal
        self.log = log
        self.proc = None

    def start(self, wait=True, timeout=20.0):
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        kw = {}
        if self.user:
            kw = dict(user=self.user, group=self.user, extra_groups=[])
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env, **kw)
        if out is not subprocess.DEVNULL:
            out.close()
        if wait:
            wait_port(self.port, timeout, proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.stop_signal:
                self.proc.send_signal(self.stop_signal)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------- servers


def redis_server(port=None, password=None) -> Proc:
    port = port or free_port()
    work = shared_dir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(work)]
    if password:
        argv += ["--requirepass", password]
    return Proc(argv, port, log=work / "redis.log")


def mosquitto(port=None, users=None) -> Proc:
    """users: {name: password} -> a password file and allow_anonymous false."""
    port = port or free_port()
    work = shared_dir()
    conf = [f"listener {port} 127.0.0.1", "persistence false", "log_dest stderr"]
    if users:
        pwfile = work / "passwd"
        pwfile.touch()
        for name, pw in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(pwfile), name, pw], check=True,
                           capture_output=True)
        # mosquitto drops from root to its "mosquitto" user before it reads the file
        shutil.chown(pwfile, "mosquitto", "mosquitto")
        pwfile.chmod(0o600)
        conf += ["allow_anonymous false", f"password_file {pwfile}"]
    else:
        conf += ["allow_anonymous true"]
    (work / "mosquitto.conf").write_text("\n".join(conf) + "\n")
    return Proc(["mosquitto", "-c", str(work / "mosquitto.conf")], port, log=work / "mosquitto.log")


def nats_server(port=None, user=None, password=None) -> Proc:
    port = port or free_port()
    work = shared_dir()
    argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
    if user:
        argv += ["--user", user, "--pass", password]
    return Proc(argv, port, log=work / "nats.log")


def _pg_bin(name: str) -> str:
    versions = sorted(PG_BIN.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 0)
    return str(versions[-1] / "bin" / name)


class Postgres(Proc):
    """A PostgreSQL cluster of our own: initdb into a temp dir as the postgres user (initdb
    and postgres refuse to run as root), password (SCRAM) authentication for TCP, so a wrong
    password is really rejected (the machine's shared cluster trusts 127.0.0.1)."""

    def __init__(self, password: str, port=None):
        port = port or free_port()
        self.work = shared_dir("postgres")
        self.data = self.work / "data"
        pwfile = self.work / "pw"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
             f"--pwfile={pwfile}", "-N", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, user="postgres", group="postgres", extra_groups=[],
            cwd=self.work,
        )
        pwfile.unlink()
        argv = [_pg_bin("postgres"), "-D", str(self.data), "-p", str(port), "-k", str(self.work),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "logging_collector=off"]
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client.
        super().__init__(argv, port, user="postgres", cwd=self.work, log=self.work / "log",
                         stop_signal=signal.SIGINT)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


class MariaDB(Proc):
    """A MariaDB server of our own in a temp dir (mariadb-install-db, then mariadbd as the
    mysql user), root without a password over TCP."""

    def __init__(self, port=None):
        port = port or free_port()
        self.work = shared_dir("mysql")
        data = self.work / "data"
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True, cwd=self.work,
        )
        argv = ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=mysql", f"--port={port}",
                "--bind-address=127.0.0.1", f"--socket={self.work}/sock", f"--pid-file={self.work}/pid",
                "--skip-log-bin", "--innodb-buffer-pool-size=16M", f"--log-error={self.work}/err.log"]
        super().__init__(argv, port, cwd=self.work)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


class GrpcHealth:
    """An in-process gRPC server with the standard health service (grpc_health.v1), on a
    port that nothing listens on until start() (gRPC binds in add_insecure_port)."""

    def __init__(self, port=None, statuses=None, with_health=True):
        from grpc_health.v1 import health, health_pb2

        self.pb = health_pb2
        self.port = port or free_port()
        self.with_health = with_health
        self.health = health.HealthServicer()
        self.server = None
        for service, status in (statuses or {}).items():
            self.set(service, status)

    def set(self, service: str, status: str):
        self.health.set(service, self.pb.HealthCheckResponse.ServingStatus.Value(status))

    def start(self):
        from concurrent import futures

        import grpc
        from grpc_health.v1 import health_pb2_grpc

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        if self.with_health:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.stop(None).wait(5)
            self.server = None


class Mute:
    """A TCP listener that accepts and then says nothing (or `greeting`, e.g. garbage) and
    keeps every connection open until stopped: a port that is open but does not speak the
    protocol. Protocols where the server speaks first (MySQL, NATS) wait for a greeting;
    those where the client speaks first wait for an answer."""

    def __init__(self, greeting=b""):
        self.greeting = greeting
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(conn)
            if self.greeting:
                try:
                    conn.sendall(self.greeting)
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()


# --------------------------------------------------------------------------- the CLI


class Result:
    def __init__(self, proc, elapsed):
        self.rc, self.out, self.err, self.elapsed = proc.returncode, proc.stdout, proc.stderr, elapsed

    def __repr__(self):
        return f"<rc={self.rc} elapsed={self.elapsed:.2f}s\nstderr:\n{self.err}\nstdout:\n{self.out}>"


# Kept for tests written before helpers.core.clean_env was the one name for it.
waitfor_env = clean_env


def run_waitfor(*args, timeout="3s", attempt="1s", env=None, limit=60) -> Result:
    """`python -m waitfor wait -v -t TIMEOUT --attempt-timeout ATTEMPT ARGS`, verbose so that
    every change of reason is printed (more text in which a leaked secret would show)."""
    proc = waitfor("wait", "-v", "-t", timeout, "--attempt-timeout", attempt, *args, timeout=limit, cwd=REPO,
                   env=clean_env(**(env or {})))
    return Result(proc, proc.took)


def start_waitfor(*args, timeout="10s", attempt="1s"):
    """The same, started in the background: for servers that start after waitfor."""
    return spawn("wait", "-v", "-t", timeout, "--attempt-timeout", attempt, *args, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True, cwd=REPO)


def finish(proc, limit=60) -> Result:
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    proc.stdout_text = out
    return Result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                  time.monotonic() - proc.t0)


class Drip:
    """A TCP listener that answers every connection with `payload` one byte per `every`
    seconds, after reading what the client sent first (`client_first`): the slow drip that
    keeps any per-read socket timeout happy for ever. Counts the connections it saw."""

    def __init__(self, payload=b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 200, every=0.5, client_first=True):
        self.payload, self.every, self.client_first = payload, every, client_first
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.seen += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        with conn:
            try:
                if self.client_first:
                    conn.settimeout(5)
                    conn.recv(65536)
                for i in range(len(self.payload)):
                    if self._stop.wait(self.every):
                        return
                    conn.sendall(self.payload[i:i + 1])
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self.sock.close()
