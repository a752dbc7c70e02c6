"""
Real servers for the fault tests, private to one test run: a redis-server, a PostgreSQL
cluster, gunicorn and Celery worker processes, each on a free port of 127.0.0.1. A test may
kill, pause or restart any of them; all are stopped when their fixture ends. The shared
PostgreSQL and Redis that other suites (and CI) use are never stopped, restarted or flushed.

Every wait polls a condition against a deadline (`wait_for`); nothing sleeps blindly.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import redis
import requests
from celery import Celery

from payments.tests.fakes.stripe_server import FakeStripe
from webhooks.tests.receivers import Receiver

BASE_DIR = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent  # the virtualenv's bin: gunicorn, celery


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, *, timeout: float, what: str, interval: float = 0.05, details=None):
    """
    Call `condition` until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError naming `what`, plus `details()` — a log tail, say).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"Timed out after {timeout:g} s waiting for {what}.{extra}")
        time.sleep(interval)


# --- Processes --------------------------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, int, str]]:
    """pid → (parent pid, process group, state) for every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # ended while we looked
            continue
        # The command name (in parentheses) may hold spaces; the fields after it do not.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def children_of(pid: int) -> list[int]:
    return sorted(
        child
        for child, (parent, _, state) in _process_table().items()
        if parent == pid and state != "Z"
    )


def group_alive(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    return sorted(
        pid for pid, (_, group, state) in _process_table().items() if group == pgid and state != "Z"
    )


class ServiceProcess:
    """A server process in its own process group (so it and its children die together)."""

    def __init__(self, name: str, args: list[str], *, env: dict, log_path: Path):
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=BASE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the whole group, and wait until none of it is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        wait_for(lambda: not group_alive(self.proc.pid), timeout=10, what=f"{self.name} to die")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """`sig` (SIGTERM), then SIGKILL whatever is left after `timeout`."""
        if self.proc is None:
            return
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- last lines of {self.name} ({self.log_path}) ---\n{tail}"


# --- Redis ------------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server without persistence, which a test may crash, pause and restart."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: ServiceProcess | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        self.process = ServiceProcess(
            "redis-server",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
            env=dict(os.environ),
            log_path=self.workdir / f"redis-{self.port}.log",
        )  # fmt: skip
        self.process.start()
        wait_for(
            self.ping, timeout=10, what="redis-server to answer", details=self.process.log_tail
        )
        return self

    def ping(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def crash(self) -> None:
        """kill -9: connections drop, everything it held in memory is gone."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: it keeps accepting connections but never answers (a hung server)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()


# --- PostgreSQL --------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        if (Path(bindir) / "initdb").exists():
            return Path(bindir)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


class PostgresCluster:
    """
    A throwaway PostgreSQL cluster (initdb, trust auth, 127.0.0.1 on a free port) that a test
    may stop and start. initdb refuses to run as root, so under root every server command
    runs as the `postgres` OS user, in a directory that user owns.
    """

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self._as = {}
        if os.geteuid() == 0:
            self._as = {"user": "postgres", "group": "postgres", "extra_groups": []}
            shutil.chown(self.dir, "postgres", "postgres")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self._as,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")

    def init(self) -> "PostgresCluster":
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w",
                  "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            text = ""
        return "--- last lines of postgres ---\n" + "\n".join(text.splitlines()[-lines:])


def database_url(settings_dict: dict) -> str:
    """The DATABASE_URL of a Django connection's settings (the test database's, say)."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


# --- The application's processes ------------------------------------------------------------


def service_env(*, database_url: str, redis_url: str, web_port: int, **extra: str) -> dict:
    """
    The environment of a production web or worker process: this run's settings (pytest
    sets them in os.environ), PostgreSQL, Redis as cache and broker, tasks sent to it, and
    links (the sandbox's webhooks among them) to the gunicorn on `web_port`.
    """
    # Nothing of the machine's own process settings (a metrics directory, gunicorn flags).
    dropped = ("PYTEST_", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(
        DJANGO_ENV_FILE="",
        DJANGO_SETTINGS_MODULE="payments_project.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_TASK_ALWAYS_EAGER="false",
        PUBLIC_BASE_URL=web_url(web_port),
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        METRICS_WORKER_PORT="0",
    )
    env.update(extra)
    return env


def web_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


class Web:
    """gunicorn with the project's gunicorn.conf.py, on a free port."""

    def __init__(self, env: dict, logdir: Path, *, port: int, workers: int = 1, threads: int = 4):
        self.port = port
        self.url = web_url(port)
        self.process = ServiceProcess(
            "gunicorn",
            [str(BIN_DIR / "gunicorn"), "payments_project.wsgi", "-c", "gunicorn.conf.py",
             "-b", f"127.0.0.1:{self.port}", "-w", str(workers), "--threads", str(threads),
             "--graceful-timeout", "3"],
            env=env,
            log_path=logdir / f"gunicorn-{self.port}.log",
        )  # fmt: skip
        self.workers = workers

    def start(self) -> "Web":
        self.process.start()
        wait_for(self._live, timeout=30, what="gunicorn to serve", details=self.process.log_tail)
        wait_for(
            lambda: len(self.worker_pids()) == self.workers,
            timeout=30,
            what="every gunicorn worker to boot",
            details=self.process.log_tail,
        )
        return self

    def _live(self) -> bool:
        if not self.process.running():
            raise AssertionError(f"gunicorn exited.\n{self.process.log_tail()}")
        try:
            return requests.get(f"{self.url}/health/live", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def stop(self) -> None:
        # Its quick shutdown: a test has no requests left to drain.
        self.process.stop(signal.SIGQUIT, timeout=5)


class Worker:
    """
    A real Celery worker (prefork, one pool process) of the project's app, with the broker's
    redelivery clock shortened (`payments_project.tests.faults_celery`).
    """

    READY = re.compile(r"@\S+ ready\.")

    def __init__(self, env: dict, logdir: Path, *, name: str):
        self.name = name
        self.env = env
        self.logdir = logdir
        self.process: ServiceProcess | None = None

    def start(self) -> "Worker":
        self.process = ServiceProcess(
            f"celery worker {self.name}",
            [str(BIN_DIR / "celery"), "-A", "payments_project.tests.faults_celery", "worker",
             "--pool=prefork", "--concurrency=1", "--without-mingle", "--without-gossip",
             "--without-heartbeat", "--loglevel=INFO", f"--hostname={self.name}@%h"],
            env=self.env,
            log_path=self.logdir / f"worker-{self.name}.log",
        )  # fmt: skip
        self.process.start()
        wait_for(
            self._ready, timeout=30, what=f"worker {self.name} to be ready", details=self.log_tail
        )
        return self

    def _ready(self) -> bool:
        if not self.process.running():
            raise AssertionError(f"The worker exited.\n{self.log_tail()}")
        return bool(self.READY.search(self.process.log()))

    def pool_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def kill(self) -> None:
        """kill -9 the whole worker, its pool processes with it (a machine that died)."""
        self.process.kill()

    def kill_pool_process(self) -> int:
        """kill -9 only the pool process running the task (the OOM killer's choice)."""
        (pid,) = self.pool_pids()
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # tests end with it; nothing of it needs to be kept

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process else ""


def send_task(broker_url: str, name: str) -> None:
    """Send a task by name, as beat does for the periodic sweeps."""
    client = Celery("faults-client", broker=broker_url, set_as_current=False)
    try:
        client.send_task(name)
    finally:
        client.close()


# --- Remote parties that hang when told to ------------------------------------------------


class HoldingStripe(FakeStripe):
    """
    The fake Stripe, able to hold one answer back: `hold(path)` makes the next request to
    `path` run (Stripe does the work and remembers its idempotency key) and then wait, with
    the caller still connected, until `release()`. `held` is set when that request arrived.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._hold_path: str | None = None
        self.held = threading.Event()
        self._release = threading.Event()

    def hold(self, path: str) -> None:
        self.held.clear()
        self._release.clear()
        self._hold_path = path

    def release(self) -> None:
        self._release.set()

    def _handle(self, request):
        answer = super()._handle(request)
        with self._lock:
            holding = self._hold_path == urlsplit(request.path).path
            if holding:
                self._hold_path = None
        if holding:
            self.held.set()
            self._release.wait(timeout=60)
        return answer

    def stop(self) -> None:
        self.release()
        super().stop()


class HoldingReceiver(Receiver):
    """A merchant's receiver that takes the first request and holds its answer back."""

    def __init__(self):
        super().__init__((200,))
        self.held = threading.Event()
        self._release = threading.Event()
        self._holding = True

    def release(self) -> None:
        self._release.set()

    def _record(self, request):
        answer = super()._record(request)
        with self._lock:
            holding, self._holding = self._holding, False
        if holding:
            self.held.set()
            self._release.wait(timeout=60)
        return answer

    def close(self) -> None:
        self.release()
        super().close()
