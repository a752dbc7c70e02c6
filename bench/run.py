"""
`make bench`: start the production set on this machine (PostgreSQL and Redis as they run,
gunicorn with `gunicorn.conf.py`, one Celery worker), load it with wrk from a separate
process on loopback, and write bench/RESULTS.md: medians of several runs, each scenario
beside a reference ceiling measured in the same run (bench/reference.py), the targets met
or missed, a profile of the hot paths and the machine's description.

    .venv/bin/python bench/run.py             # everything (~15 min; seeds 1M payments once)
    .venv/bin/python bench/run.py --quick     # 1 run x 3 s per measurement, a 20k seed
    .venv/bin/python bench/run.py --scenarios 1,3 --workers 2 --threads 4

What it owns, and drops or empties at the start: the database `payments_bench`, Redis db
12, ports 8800 (gunicorn) and 8801 (the callback receiver). The seeded database
(`payments_bench_1m_sbx`, or `payments_bench_20k_sbx` for --quick) is kept between runs: a comment
on the database marks a finished seed, and a later run only migrates it. Every process it
starts is stopped when it ends, also on failure or Ctrl-C. Raw numbers, logs and profiles
go to bench/out/.
"""

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402

from payments import signing  # noqa: E402

OUT = ROOT / "bench" / "out"
WRK_SCRIPT = ROOT / "bench" / "wrk" / "bench.lua"
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
HOST = "127.0.0.1"
PORT = 8800
RECEIVER_PORT = 8801
BASE_URL = f"http://{HOST}:{PORT}"
PG = "postgres://postgres@127.0.0.1:5432"
BENCH_DB = "payments_bench"
REDIS_URL = "redis://127.0.0.1:6379/12"
# Fixed, so that the seeded database's demo keys (derived from it) stay valid across runs.
SECRET_KEY = "bench-only-not-a-secret-do-not-deploy-0123456789"
SANDBOX_SECRET = signing.webhook_secret_derive(SECRET_KEY, "bench-sandbox")
STRIPE_KEY = "sk_test_bench0123456789abcdef"
STRIPE_DELAY = 0.3
WORKER_CONCURRENCY = 4  # docker-compose.yml's default
# gunicorn (workers, threads) tried on this 2-core machine before the runs.
COMBOS = [(5, 4), (2, 4), (4, 2), (4, 1), (8, 1)]
CREATE_BODY = {
    "amount": "599.00",
    "currency": "RUB",
    "provider": "sandbox",
    "description": "Bench payment",
    "return_url": "https://shop.example/thanks",
    "metadata": {"bench": "1"},
}
SLOW_BODY = {**CREATE_BODY, "amount": "10.00", "currency": "USD", "provider": "stripe"}


@dataclass(frozen=True)
class Plan:
    name: str
    runs: int
    seconds: int
    warmup: int
    drain_cap: float
    seed_payments: int
    seed_db: str
    list_seconds: int
    list_connections: int
    callbacks_per_run: int
    callback_rate: float
    burst: int
    recon_runs: int
    calibrate_seconds: int
    profile_seconds: int


# The seeded databases take every payment through the sandbox (`seed_demo --provider`), so
# that reconciliation (scenario 6) compares all of them offline.
FULL = Plan("full", 3, 10, 3, 20, 1_000_000, "payments_bench_1m_sbx", 5, 4, 100, 10, 600, 3, 4, 10)
QUICK = Plan("quick", 1, 3, 2, 5, 20_000, "payments_bench_20k_sbx", 3, 4, 30, 10, 100, 1, 2, 4)


def say(text: str) -> None:
    sys.stdout.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stdout.flush()


class BenchError(Exception):
    pass


# --- Processes ----------------------------------------------------------------------------


class Processes:
    """What this run started: each in a session of its own, stopped by its id at the end."""

    def __init__(self):
        self.running: dict[str, tuple[subprocess.Popen, object]] = {}

    def start(self, name: str, cmd: list[str], env: dict, *, stdout=None) -> subprocess.Popen:
        log = open(OUT / f"{name}.log", "ab")  # noqa: SIM115  (closed in stop)
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            start_new_session=True,
        )
        self.running[name] = (proc, log)
        return proc

    def pid(self, name: str) -> int:
        return self.running[name][0].pid

    def stop(self, name: str, timeout: float = 20) -> None:
        proc, log = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # Its children (gunicorn's workers, Celery's pool) are in its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(5)
        log.close()

    def stop_all(self) -> None:
        for name in reversed(list(self.running)):
            try:
                self.stop(name)
            except Exception as exc:  # keep stopping the others
                say(f"could not stop {name}: {exc}")


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{url}: the process exited ({proc.returncode}); see bench/out/")
        try:
            status, _ = http_call("GET", url)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer within {timeout:.0f}s")


def http_call(method: str, url: str, body=None, headers=None, conn=None) -> tuple[int, bytes]:
    """One request; `url` is a whole URL, or a path on `conn` (a kept-alive connection)."""
    own = conn is None
    if own:
        parsed = re.match(r"http://([^:/]+):(\d+)(.*)", url)
        conn = http.client.HTTPConnection(parsed.group(1), int(parsed.group(2)), timeout=30)
        url = parsed.group(3) or "/"
    try:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        conn.request(method, url, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


# --- Environment --------------------------------------------------------------------------


# Prometheus multiprocess files of the bench's processes (a tmpfs, as docker-compose.yml has).
METRICS_DIR = Path("/dev/shm") / "payments-bench-metrics"


def app_env(db: str, *, workers: int = 2, threads: int = 4, stripe_url: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "GUNICORN_"))}
    METRICS_DIR.mkdir(exist_ok=True)
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_ENV_FILE": "",
            "DEBUG": "false",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": f"{PG}/{db}",
            "REDIS_URL": REDIS_URL,
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_HSTS_SECONDS": "0",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "LOG_LEVEL": "WARNING",
            "API_RATE_LIMIT": "1000000/s",
            "WEBHOOK_RATE_LIMIT": "1000000/s",
            "PUBLIC_BASE_URL": BASE_URL,
            "SANDBOX_WEBHOOK_URL": f"{BASE_URL}/webhooks/sandbox",
            "SANDBOX_WEBHOOK_SECRET": SANDBOX_SECRET,
            "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_PUBLISHABLE_KEY": "pk_test_bench0123456789abcdef",
            "STRIPE_API_BASE": stripe_url,
            "GUNICORN_BIND": f"{HOST}:{PORT}",
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            # As docker-compose.yml runs them: metrics in multiprocess mode, on a tmpfs.
            "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR),
        }
    )
    return env


def manage(env: dict, *args: str, timeout: float = 3600) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def pg(db: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(f"{PG}/{db}", autocommit=True)


def db_exists(name: str) -> bool:
    with pg() as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone())


# --- Machine ------------------------------------------------------------------------------


def _cpu_times() -> tuple[float, float]:
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields), idle


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, IndexError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    with pg() as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        pg_settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("shared_buffers", "synchronous_commit", "max_connections")
        }
    info = redis.Redis.from_url(REDIS_URL).info("server")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    versions = {}
    for name in ("django", "gunicorn", "celery", "psycopg", "djangorestframework", "redis"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "postgresql_settings": pg_settings,
        "redis": info.get("redis_version"),
        "wrk": (wrk.stdout + wrk.stderr).split("\n")[0].strip(),
        "versions": versions,
    }


# --- Load ---------------------------------------------------------------------------------


def wrk(
    mode: str,
    path: str,
    connections: int,
    seconds: float,
    *,
    auth: str = "",
    body: dict | None = None,
    requests_file: Path | None = None,
    prefix: str = "",
) -> dict:
    threads = min(2, connections)
    env = dict(os.environ)
    env.update(
        {
            "BENCH_MODE": mode,
            "BENCH_PATH": path,
            "BENCH_AUTH": auth,
            "BENCH_BODY": json.dumps(body) if body else "",
            "BENCH_REQUESTS": str(requests_file or ""),
            "BENCH_PREFIX": prefix or f"k{time.time_ns()}",
            "BENCH_THREADS": str(threads),
        }
    )
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s"]
    cmd += ["--timeout", "10s", "-s", str(WRK_SCRIPT), BASE_URL]
    total0, idle0 = _cpu_times()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    total1, idle1 = _cpu_times()
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk gave no result:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(line[len("BENCH_RESULT ") :])
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    result["valid"] = result["requests"] > 0 and result["non2xx"] == 0 and errors == 0
    busy = 1 - (idle1 - idle0) / max(total1 - total0, 1e-9)
    result["machine_busy"] = round(busy, 3)
    result["connections"] = connections
    if not result["valid"]:
        say(
            f"  INVALID run: {result['non2xx']} non-2xx, {errors} socket errors; "
            f"first: {result['bad_sample'][:200]}"
        )
    return result


def medians(runs: list[dict], keys=("rps", "p50_ms", "p99_ms")) -> dict:
    valid = [r for r in runs if r.get("valid", True)]
    summary = {"runs": len(runs), "valid_runs": len(valid)}
    for key in keys:
        summary[key] = statistics.median(r[key] for r in valid) if valid else None
    return summary


def cpu_medians(runs: list[dict]) -> dict:
    valid = [r["cpu_ms_per_request"] for r in runs if r.get("valid") and "cpu_ms_per_request" in r]
    names = sorted({name for r in valid for name in r})
    return {name: statistics.median(r.get(name, 0) for r in valid) for name in names}


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


# --- The bench ----------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, args):
        self.plan = plan
        self.args = args
        self.procs = Processes()
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.results: dict = {"plan": asdict(plan), "scenarios": {}, "notes": []}
        self.stripe_url = ""
        self.workers, self.threads = args.workers or 0, args.threads or 0
        self.token = f"{int(time.time())}"

    # Services ---------------------------------------------------------------------------

    def start_helpers(self) -> None:
        receiver_log = OUT / "callbacks.log"
        receiver_log.write_text("")
        self.receiver_log = receiver_log
        env = app_env(BENCH_DB)
        cmd = [PYTHON, "-m", "bench.servers", "receiver", "--port", str(RECEIVER_PORT)]
        proc = self.procs.start("receiver", [*cmd, "--log", str(receiver_log)], env)
        stripe = self.procs.start(
            "fake-stripe",
            [PYTHON, "-m", "bench.servers", "stripe", "--delay", str(STRIPE_DELAY)]
            + ["--secret-key", STRIPE_KEY],
            env,
            stdout=subprocess.PIPE,
        )
        self.stripe_url = json.loads(stripe.stdout.readline())["url"]
        time.sleep(0.5)
        if proc.poll() is not None:
            raise BenchError("the callback receiver did not start (port 8801 taken?)")

    def env(self, db: str = BENCH_DB) -> dict:
        return app_env(db, workers=self.workers, threads=self.threads, stripe_url=self.stripe_url)

    def start_web(self, db: str = BENCH_DB) -> None:
        if "gunicorn" in self.procs.running:
            self.procs.stop("gunicorn")
        cmd = [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "bench.wsgi:application"]
        proc = self.procs.start("gunicorn", cmd, self.env(db))
        wait_http(f"{BASE_URL}/health/live", proc=proc)

    def start_worker(self, db: str = BENCH_DB) -> None:
        if "worker" in self.procs.running:
            self.procs.stop("worker")
        cmd = [str(VENV_BIN / "celery"), "-A", "payments_project", "worker"]
        cmd += ["--loglevel", "WARNING", "--concurrency", str(WORKER_CONCURRENCY)]
        cmd += ["--hostname", f"bench@{platform.node()}", "--without-gossip", "--without-mingle"]
        self.procs.start("worker", cmd, self.env(db))
        time.sleep(3)

    def cpu_snapshot(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of each process of the set: web, worker, PostgreSQL backends."""
        groups: dict[str, list[int]] = {}
        for name in ("gunicorn", "worker"):
            if name in self.procs.running:
                pid = self.procs.pid(name)
                groups[name] = [pid, *_children(pid)]
        try:
            with pg() as conn:
                groups["postgres"] = [
                    row[0]
                    for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) "
                        "AND pid <> pg_backend_pid()",
                        [[BENCH_DB, self.plan.seed_db]],
                    )
                ]
        except psycopg.Error:
            groups["postgres"] = []
        return {
            name: {pid: cpu for pid in pids if (cpu := _proc_cpu(pid)) is not None}
            for name, pids in groups.items()
        }

    def measured(self, load, seconds: float) -> dict:
        """`load(seconds)`, with the CPU milliseconds per request each part of the set spent."""
        before = self.cpu_snapshot()
        run = load(seconds)
        after = self.cpu_snapshot()
        per_request = {}
        for name, pids in after.items():
            # A process that appeared during the run (a recycled worker) counts whole.
            spent = sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            per_request[name] = round(1000 * spent / max(run["requests"], 1), 2)
        run["cpu_ms_per_request"] = per_request
        return run

    def drain(self, cap: float | None = None) -> dict:
        """Wait for the worker to empty the queue; purge what is left after `cap`."""
        cap = self.plan.drain_cap if cap is None else cap
        started = time.monotonic()
        while time.monotonic() - started < cap:
            if self.redis.llen("celery") == 0 and self.redis.hlen("unacked") == 0:
                return {"drained": True, "seconds": round(time.monotonic() - started, 1)}
            time.sleep(0.2)
        left = self.redis.llen("celery")
        self.redis.delete("celery")
        return {"drained": False, "seconds": round(cap, 1), "purged": left}

    # Setup ------------------------------------------------------------------------------

    def prepare_db(self) -> None:
        with pg() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        manage(self.env(), "migrate", "--noinput", "--verbosity", "0")
        self.redis.flushdb()
        shop = json.loads(manage(self.env(), "create_merchant", "Bench Shop", "--json"))
        hooks = json.loads(manage(self.env(), "create_merchant", "Bench Callbacks", "--json"))
        self.merchant, self.key = shop["id"], shop["secret_key"]
        self.cb_merchant, self.cb_key = hooks["id"], hooks["secret_key"]

    def calibrate(self) -> None:
        if self.workers and self.threads:
            self.results["calibration"] = {"chosen": [self.workers, self.threads], "given": True}
            return
        say("calibrating gunicorn workers x threads (create payment, 16 connections)")
        trials = []
        for workers, threads in COMBOS:
            self.workers, self.threads = workers, threads
            self.start_web()
            seconds = self.plan.calibrate_seconds
            wrk("create", "/api/v1/payments", 16, 1, auth=self.key, body=CREATE_BODY)
            run = wrk("create", "/api/v1/payments", 16, seconds, auth=self.key, body=CREATE_BODY)
            self.drain(cap=3)
            trials.append({"workers": workers, "threads": threads, **run})
            say(f"  {workers}x{threads}: {run['rps']:.0f} req/s, p99 {run['p99_ms']:.1f} ms")
        valid = [t for t in trials if t["valid"]] or trials
        best = max(t["rps"] for t in valid)
        # Within 5 % of the best counts as a tie: the lower p99 wins.
        close = [t for t in valid if t["rps"] >= 0.95 * best]
        chosen = min(close, key=lambda t: t["p99_ms"])
        self.workers, self.threads = chosen["workers"], chosen["threads"]
        self.results["calibration"] = {"chosen": [self.workers, self.threads], "trials": trials}
        say(f"chosen: {self.workers} workers x {self.threads} threads")

    # Scenarios --------------------------------------------------------------------------

    def pair(self, name: str, real, ref, *, after_real=None) -> dict:
        """Warm up, then alternate real and reference runs; medians of each."""
        real(self.plan.warmup)
        if after_real:
            after_real()
        if ref:
            ref(self.plan.warmup)
            self.redis.delete("bench:ref:queue")
        real_runs, ref_runs = [], []
        for i in range(self.plan.runs):
            run = self.measured(real, self.plan.seconds)
            if after_real:
                run["drain"] = after_real()
            real_runs.append(run)
            say(f"  {name} run {i + 1}: {run['rps']:.0f} req/s, p50 {run['p50_ms']:.1f} ms, "
                f"p99 {run['p99_ms']:.1f} ms{'' if run['valid'] else ' INVALID'}")  # fmt: skip
            if ref:
                run = self.measured(ref, self.plan.seconds)
                self.redis.delete("bench:ref:queue")
                ref_runs.append(run)
                say(f"  {name} reference {i + 1}: {run['rps']:.0f} req/s, "
                    f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms")  # fmt: skip
        result = {"runs": real_runs, "median": medians(real_runs)}
        result["cpu_ms_per_request"] = cpu_medians(real_runs)
        if ref:
            result["ref_runs"] = ref_runs
            result["ref_median"] = medians(ref_runs)
            result["ref_cpu_ms_per_request"] = cpu_medians(ref_runs)
            result["ratio"] = ratio(result["median"]["rps"], result["ref_median"]["rps"])
        return result

    def scenario_create(self) -> None:
        say("scenario 1: create payment (sandbox)")
        out = {}
        for conns in (16, 64):
            out[str(conns)] = self.pair(
                f"create@{conns}",
                lambda s, c=conns: wrk(
                    "create", "/api/v1/payments", c, s, auth=self.key, body=CREATE_BODY
                ),
                lambda s, c=conns: wrk(
                    "create", f"/bench/ref/payments/{self.merchant}", c, s, body=CREATE_BODY
                ),
                after_real=self.drain,
            )
        self.results["scenarios"]["1"] = out

    def scenario_slow_provider(self) -> None:
        say(f"scenario 2: create payment, provider answering in {STRIPE_DELAY * 1000:.0f} ms")
        out = {}
        before = self._stripe_checkouts()
        for conns in (16, 64):
            out[str(conns)] = self.pair(
                f"slow@{conns}",
                lambda s, c=conns: wrk(
                    "create", "/api/v1/payments", c, s, auth=self.key, body=SLOW_BODY
                ),
                None,
                # 300 ms a call and 4 processes: the worker is far behind by design; what
                # it has not reached is dropped so it does not spill into the next runs.
                after_real=lambda: self.drain(cap=1),
            )
            base = self.results["scenarios"].get("1", {}).get(str(conns))
            if base:
                out[str(conns)]["vs_scenario_1"] = ratio(
                    out[str(conns)]["median"]["rps"], base["median"]["rps"]
                )
        out["provider_checkouts_made"] = self._stripe_checkouts() - before
        self.results["scenarios"]["2"] = out

    def _stripe_checkouts(self) -> int:
        with pg(BENCH_DB) as conn:
            return conn.execute(
                "SELECT count(*) FROM payments_payment WHERE provider = 'stripe' "
                "AND provider_checkout_id <> ''"
            ).fetchone()[0]

    def _pending_payments(self, merchant: str, limit: int) -> list[tuple]:
        with pg(BENCH_DB) as conn:
            return conn.execute(
                "SELECT id, provider_payment_id, amount, currency FROM payments_payment "
                "WHERE merchant_id = %s AND provider = 'sandbox' AND status = 'pending' "
                "ORDER BY id LIMIT %s",
                [merchant, limit],
            ).fetchall()

    def _webhook(self, event_id: str, payment: tuple) -> tuple[str, dict]:
        payment_id, provider_id, amount, currency = payment
        now = int(time.time())
        body = json.dumps(
            {
                "id": event_id,
                "type": "payment.succeeded",
                "created": now,
                "data": {
                    "object": {
                        "id": provider_id or f"sbx_pay_bench{payment_id[4:]}",
                        "object": "sandbox.payment",
                        "reference": payment_id,
                        "status": "succeeded",
                        "amount": str(amount),
                        "currency": currency,
                        "manual_capture": False,
                        "amount_captured": str(amount),
                        "amount_refunded": "0",
                        "payment_method": {"id": "sbx_pm_bench", "brand": "visa", "last4": "4242"},
                        "failure_code": "",
                        "failure_message": "",
                        "created": now,
                        "updated": now,
                    }
                },
            },
            separators=(",", ":"),
        )
        return body, signing.webhook_headers(SANDBOX_SECRET, event_id, body)

    def _webhook_file(self, kind: str, count: int, payments: list[tuple]) -> Path:
        path = OUT / f"webhooks-{kind}.tsv"
        stamp = time.time_ns()
        with open(path, "w") as f:
            for i in range(count):
                event_id = f"sev_bench_{kind}_{stamp}_{i}"
                body, h = self._webhook(event_id, payments[i % len(payments)])
                f.write(f"{event_id}\t{h['webhook-timestamp']}\t{h['webhook-signature']}\t{body}\n")
        return path

    def scenario_webhooks(self) -> None:
        say("scenario 3: inbound webhook ingest (sandbox, signed)")
        payments = self._pending_payments(self.merchant, 100_000)
        if not payments:
            wrk("create", "/api/v1/payments", 16, 2, auth=self.key, body=CREATE_BODY)
            self.drain()
            payments = self._pending_payments(self.merchant, 100_000)
        ceiling = (self.results["scenarios"].get("1", {}).get("16") or {}).get("ref_median", {})
        per_second = max(ceiling.get("rps") or 0, 1000)

        def load(kind: str, path: str, seconds: float) -> dict:
            # Signed just before the run: a signature is good for 5 minutes.
            count = int(per_second * seconds * 1.5) + 200
            file = self._webhook_file(kind, count, payments)
            run = wrk("replay", path, 16, seconds, requests_file=file)
            run["events_prepared"] = count
            return run

        self.results["scenarios"]["3"] = self.pair(
            "webhooks@16",
            lambda s: load("real", "/webhooks/sandbox", s),
            lambda s: load("ref", "/bench/ref/webhooks/sandbox", s),
            after_real=self.drain,
        )
        self.results["scenarios"]["3"]["payments_referenced"] = len(payments)

    def scenario_callbacks(self) -> None:
        say("scenario 5: payment success -> merchant callback")
        plan = self.plan
        status, body = http_call(
            "POST",
            f"{BASE_URL}/api/v1/webhook_endpoints",
            {
                "url": f"http://{HOST}:{RECEIVER_PORT}/hook",
                "enabled_events": ["payment.succeeded"],
            },
            {"Authorization": f"Bearer {self.cb_key}", "Content-Type": "application/json"},
        )
        if status != 201:
            raise BenchError(f"registering the webhook endpoint: {status} {body[:300]!r}")
        endpoint = json.loads(body)["id"]
        wanted = plan.callbacks_per_run * plan.runs + plan.burst
        self._create_payments(self.cb_key, wanted)
        self.drain(cap=120)
        payments = self._pending_payments(self.cb_merchant, wanted)
        if len(payments) < wanted:
            raise BenchError(f"only {len(payments)} of {wanted} callback payments are pending")
        latency_runs = []
        for i in range(plan.runs):
            share = payments[i * plan.callbacks_per_run : (i + 1) * plan.callbacks_per_run]
            run = self._latency_run(share, plan.callback_rate)
            latency_runs.append(run)
            say(f"  latency run {i + 1}: p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms "
                f"({run['count']} callbacks at {plan.callback_rate:.0f}/s)")  # fmt: skip
        burst = payments[plan.runs * plan.callbacks_per_run :]
        seen = self._callback_lines()
        self._send_webhooks(burst, threads=8)
        self._wait_callbacks(seen + len(burst), timeout=300)
        self.drain(cap=60)

        def drain_once(_seconds=None) -> dict:
            seen = self._callback_lines()
            queued = manage(self.env(), "redeliver", "--endpoint", endpoint)
            count = int(re.search(r"Queued (\d+)", queued).group(1))
            arrivals = self._wait_callbacks(seen + count, timeout=600)[seen:]
            span = arrivals[-1][0] - arrivals[0][0]
            return {"count": count, "seconds": round(span, 2), "per_second": (count - 1) / span}

        drain_runs = []
        for i in range(plan.runs):
            if i == 0 and self.args.profile:
                # The worker's CPU while it sends callbacks, for the profiles section.
                spied = self.profile(
                    "worker-deliveries-gil", drain_once, gil=True, target="worker", seconds=6
                )
                self.results.setdefault("profiles", {})["worker-deliveries-gil"] = spied
                run = spied["run"]
            else:
                run = drain_once()
            drain_runs.append(run)
            say(f"  delivery drain {i + 1}: {run['count']} callbacks, {run['per_second']:.1f}/s")
        ref = json.loads(
            subprocess.run(
                [PYTHON, "-m", "bench.servers", "deliver-ref", "--procs", str(WORKER_CONCURRENCY)]
                + ["--url", f"http://{HOST}:{RECEIVER_PORT}/ref", "--count", str(wanted)],
                cwd=ROOT,
                env=self.env(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.splitlines()[-1]
        )
        say(f"  reference deliveries: {ref['per_second']:.0f}/s")
        self.results["scenarios"]["5"] = {
            "latency_runs": latency_runs,
            "latency": medians(latency_runs, ("p50_ms", "p99_ms")),
            "drain_runs": drain_runs,
            "deliveries_per_second": statistics.median(r["per_second"] for r in drain_runs),
            "ref": ref,
            "ratio": ratio(
                statistics.median(r["per_second"] for r in drain_runs), ref["per_second"]
            ),
        }

    def _create_payments(self, key: str, count: int) -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def share(n: int, offset: int) -> None:
            conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
            for i in range(n):
                h = {**headers, "Idempotency-Key": f"cb-{self.token}-{offset + i}"}
                status, body = http_call("POST", "/api/v1/payments", CREATE_BODY, h, conn=conn)
                if status != 201:
                    raise BenchError(f"creating a payment: {status} {body[:300]!r}")

        with ThreadPoolExecutor(8) as pool:
            parts = [count // 8 + (1 if i < count % 8 else 0) for i in range(8)]
            offsets = [sum(parts[:i]) for i in range(8)]
            list(pool.map(share, parts, offsets))

    def _send_webhooks(self, payments: list[tuple], *, threads: int = 1, rate: float = 0):
        def share(part: list[tuple]) -> list[float]:
            conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
            sent = []
            started = time.monotonic()
            for i, payment in enumerate(part):
                if rate:
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                body, headers = self._webhook(f"sev_cb_{self.token}_{payment[0]}", payment)
                headers["Content-Type"] = "application/json"
                status, answer = http_call(
                    "POST", "/webhooks/sandbox", body.encode(), headers, conn=conn
                )
                if status != 200:
                    raise BenchError(f"sandbox webhook: {status} {answer[:300]!r}")
                sent.append(time.time())
            return sent

        with ThreadPoolExecutor(threads) as pool:
            parts = [payments[i::threads] for i in range(threads)]
            return [t for sent in pool.map(share, parts) for t in sent]

    def _callback_lines(self) -> int:
        with open(self.receiver_log) as f:
            return sum(1 for _ in f)

    def _wait_callbacks(self, total: int, timeout: float) -> list[tuple[float, str]]:
        deadline = time.monotonic() + timeout
        while True:
            with open(self.receiver_log) as f:
                lines = [line.split() for line in f if line.strip()]
            if len(lines) >= total:
                return [(float(t), oid) for t, oid, *_ in lines]
            if time.monotonic() > deadline:
                raise BenchError(f"only {len(lines)} of {total} callbacks arrived in {timeout}s")
            time.sleep(0.2)

    def _latency_run(self, payments: list[tuple], rate: float) -> dict:
        seen = self._callback_lines()
        self._send_webhooks(payments, rate=rate)
        arrivals = self._wait_callbacks(seen + len(payments), timeout=120)[seen:]
        arrived = {oid: t for t, oid in arrivals}
        with pg(BENCH_DB) as conn:
            rows = conn.execute(
                "SELECT id, completed_at FROM payments_payment WHERE id = ANY(%s)",
                [[p[0] for p in payments]],
            ).fetchall()
        lat = sorted((arrived[pid] - done.timestamp()) * 1000 for pid, done in rows if done)
        if len(lat) < len(payments):
            raise BenchError(f"{len(payments) - len(lat)} callback payments did not complete")
        return {
            "count": len(lat),
            "p50_ms": statistics.median(lat),
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "max_ms": lat[-1],
        }

    # Profiles and queries ------------------------------------------------------------------

    def profile(
        self, name: str, load, *, gil: bool = False, target: str = "gunicorn", seconds=None
    ) -> dict:
        """py-spy over a process and its children while `load` runs; raw stacks (`--gil`: CPU)."""
        out = OUT / f"profile-{name}.txt"
        out.unlink(missing_ok=True)
        seconds = seconds or self.plan.profile_seconds
        spy = subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "--pid", str(self.procs.pid(target))]
            + ["--subprocesses", "--format", "raw", "--rate", "200", "--nonblocking"]
            + ["--duration", str(seconds + 1), "-o", str(out)]
            + (["--gil"] if gil else []),
            stdout=subprocess.DEVNULL,
            stderr=open(OUT / "py-spy.log", "ab"),  # noqa: SIM115
        )
        try:
            time.sleep(0.5)
            run = load(seconds)
            spy.wait(timeout=seconds + 60)
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if not out.exists():
            return {"error": "py-spy wrote nothing (see bench/out/py-spy.log)", "run": run}
        return {"run": run, **profile_summary(out)}

    def profiles(self) -> None:
        say("profiles (py-spy, every gunicorn worker)")

        def create(seconds):
            return wrk("create", "/api/v1/payments", 16, seconds, auth=self.key, body=CREATE_BODY)

        self.results.setdefault("profiles", {})["create"] = self.profile("create", create)
        self.drain()
        self.results["profiles"]["create-gil"] = self.profile("create-gil", create, gil=True)
        self.drain()
        self.results["profiles"]["worker-create-gil"] = self.profile(
            "worker-create-gil", create, gil=True, target="worker"
        )
        self.drain()
        payments = self._pending_payments(self.merchant, 100_000) or [
            ("pay_missing", "", "1.00", "RUB")
        ]

        def ingest(seconds):
            file = self._webhook_file("profile", int(1500 * seconds) + 200, payments)
            return wrk("replay", "/webhooks/sandbox", 16, seconds, requests_file=file)

        self.results["profiles"]["webhooks"] = self.profile("webhooks", ingest)
        self.drain()
        self.results["profiles"]["webhooks-gil"] = self.profile("webhooks-gil", ingest, gil=True)
        self.drain()

    def capture(self) -> None:
        say("queries of one request of each kind (CaptureQueriesContext)")
        payment = (self._pending_payments(self.merchant, 1) or [("pay_x", "", "1.00", "RUB")])[0]
        webhooks = [self._webhook(f"sev_capture_{self.token}_{i}", payment) for i in range(2)]
        env = self.env()
        env["BENCH_CAPTURE"] = json.dumps({"key": self.key, "webhooks": webhooks})
        done = subprocess.run(
            [PYTHON, "-m", "bench.capture"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            self.results["queries"] = {"error": done.stderr[-2000:]}
            return
        self.results["queries"] = json.loads(done.stdout.splitlines()[-1])

    # Phase B: the seeded database ---------------------------------------------------------

    def ensure_seeded(self) -> dict:
        db, wanted = self.plan.seed_db, self.plan.seed_payments
        marker = f"bench seed complete: {wanted} sandbox payments"
        if not db_exists(db):
            with pg() as conn:
                conn.execute(f'CREATE DATABASE "{db}"')
        env = self.env(db)
        manage(env, "migrate", "--noinput", "--verbosity", "0")
        with pg() as conn:
            comment = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                [db],
            ).fetchone()[0]
        seeded_now = comment != marker
        if seeded_now:
            say(f"seeding {wanted:,} payments into {db} (once; a few minutes for a million)")
            started = time.monotonic()
            manage(env, "seed_demo", "--payments", str(wanted), "--provider", "sandbox", "--json")
            with pg() as conn:
                conn.execute(f"COMMENT ON DATABASE \"{db}\" IS '{marker}'")
            say(f"seeded in {time.monotonic() - started:.0f}s")
        demo = json.loads(manage(env, "seed_demo", "--json").splitlines()[-1])
        return {"db": db, "seeded_now": seeded_now, **demo}

    def scenario_list(self, demo: dict) -> None:
        say("scenario 4: list payments, first page and deep page")
        merchant, key = demo["merchant"], demo["secret_key"]
        with pg(self.plan.seed_db) as conn:
            total = conn.execute(
                "SELECT count(*) FROM payments_payment WHERE merchant_id = %s AND NOT livemode",
                [merchant],
            ).fetchone()[0]
            depth = int(total * 0.9)
            deep_id = conn.execute(
                "SELECT id FROM payments_payment WHERE merchant_id = %s AND NOT livemode "
                "ORDER BY id DESC OFFSET %s LIMIT 1",
                [merchant, depth],
            ).fetchone()[0]
        cursor = base64.b64encode(f"p={deep_id}".encode()).decode()
        paths = {
            "first": "/api/v1/payments",
            "deep": f"/api/v1/payments?cursor={quote(cursor)}",
            "ref_first": f"/bench/ref/payments/{merchant}/list",
            "ref_deep": f"/bench/ref/payments/{merchant}/list?before={deep_id}",
        }
        for name, path in paths.items():
            status, body = http_call(
                "GET", BASE_URL + path, headers={"Authorization": f"Bearer {key}"}
            )
            count = len(json.loads(body).get("results", [])) if status == 200 else 0
            if count != 20:
                raise BenchError(f"{name} page: {status}, {count} results: {body[:300]!r}")
        conns, seconds = self.plan.list_connections, self.plan.list_seconds
        runs = {name: [] for name in paths}
        for path in paths.values():
            wrk("get", path, conns, self.plan.warmup, auth=key)
        for i in range(self.plan.runs):
            for name, path in paths.items():
                run = self.measured(lambda s, p=path: wrk("get", p, conns, s, auth=key), seconds)
                runs[name].append(run)
                say(f"  {name} run {i + 1}: p50 {run['p50_ms']:.2f} ms, {run['rps']:.0f} req/s")
        out = {"rows": total, "depth": depth, "connections": conns, "runs": runs}
        out["median"] = {name: medians(r) for name, r in runs.items()}
        out["cpu_ms_per_request"] = {name: cpu_medians(r) for name, r in runs.items()}
        m = out["median"]
        out["deep_vs_first"] = ratio(m["deep"]["p50_ms"], m["first"]["p50_ms"])
        out["ref_deep_vs_first"] = ratio(m["ref_deep"]["p50_ms"], m["ref_first"]["p50_ms"])
        out["first_vs_ref"] = ratio(m["first"]["rps"], m["ref_first"]["rps"])
        self.results["scenarios"]["4"] = out

    def scenario_reconcile(self) -> None:
        say("scenario 6: reconciliation (sandbox) over the seeded database")
        db = self.plan.seed_db
        with pg(db) as conn:
            first, last, count = conn.execute(
                "SELECT min(created_at), max(created_at), count(*) FROM payments_payment "
                "WHERE provider = 'sandbox'"
            ).fetchone()
            total = conn.execute("SELECT count(*) FROM payments_payment").fetchone()[0]
        since, until = first.date().isoformat(), last.date().isoformat()
        env = self.env(db)
        runs, refs = [], []
        for i in range(self.plan.recon_runs):
            run = timed(
                [PYTHON, "manage.py", "reconcile", "--provider", "sandbox"]
                + ["--since", since, "--until", until],
                env,
                "reconcile",
            )
            match = re.search(r"compared ([\d,]+) provider records with ([\d,]+).*?([\d,]+) mis",
                              run["stdout"], re.S)  # fmt: skip
            if match:
                run["provider_records"], run["ours"], run["mismatches"] = (
                    int(g.replace(",", "")) for g in match.groups()
                )
            run["valid"] = run["returncode"] == 0
            runs.append(run)
            say(f"  reconcile run {i + 1}: {run['seconds']:.1f} s, peak {run['peak_mb']:.0f} MB"
                f"{'' if run['valid'] else ' FAILED: ' + run['stdout'][-300:]}")  # fmt: skip
            end = (datetime.fromisoformat(until) + timedelta(days=1)).isoformat()
            ref = timed(
                [PYTHON, "-m", "bench.servers", "scan-ref", "--db", f"{PG}/{db}"]
                + ["--since", since, "--until", end],
                env,
                "scan-ref",
            )
            ref["valid"] = ref["returncode"] == 0
            ref.update(json.loads(ref["stdout"].splitlines()[-1]) if ref["valid"] else {})
            refs.append(ref)
            say(f"  reference scan {i + 1}: {ref['seconds']:.1f} s, peak {ref['peak_mb']:.0f} MB")
        valid = [r for r in runs if r["valid"]]
        valid_refs = [r for r in refs if r["valid"]]
        self.results["scenarios"]["6"] = {
            "payments_total": total,
            "sandbox_payments": count,
            "since": since,
            "until": until,
            "runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
            "ref_runs": [{k: v for k, v in r.items() if k != "stdout"} for r in refs],
            "seconds": statistics.median(r["seconds"] for r in valid) if valid else None,
            "peak_mb": statistics.median(r["peak_mb"] for r in valid) if valid else None,
            "ref_seconds": statistics.median(r["seconds"] for r in valid_refs)
            if valid_refs
            else None,
            "ref_peak_mb": statistics.median(r["peak_mb"] for r in valid_refs)
            if valid_refs
            else None,
        }

    # The whole run ------------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        wanted = set(self.args.scenarios)
        self.results["started"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["load_before"] = loadavg()
        self.results["machine"] = machine()
        say(f"load average before: {self.results['load_before']}")
        self.start_helpers()
        self.prepare_db()
        self.start_worker()
        if wanted & {"1", "2", "3", "5"} or self.args.profile:
            self.calibrate()
            self.start_web()
            self.results["gunicorn"] = {"workers": self.workers, "threads": self.threads}
            if "1" in wanted:
                self.scenario_create()
            if "2" in wanted:
                self.scenario_slow_provider()
            if "3" in wanted:
                self.scenario_webhooks()
            if "5" in wanted:
                self.scenario_callbacks()
            if self.args.profile:
                self.profiles()
            self.capture()
        if wanted & {"4", "6"}:
            self.procs.stop("worker")
            demo = self.ensure_seeded()
            self.results["seed"] = {k: demo[k] for k in ("db", "seeded_now", "merchant")}
            if not self.workers:
                self.workers, self.threads = 2, 4
            self.start_web(self.plan.seed_db)
            if "4" in wanted:
                self.scenario_list(demo)
            if "6" in wanted:
                self.procs.stop("gunicorn")
                self.scenario_reconcile()
        self.results["load_after"] = loadavg()
        self.results["seconds"] = round(time.monotonic() - started)


def timed(cmd: list[str], env: dict, name: str) -> dict:
    """Run `cmd`; wall time and peak resident memory (the child's ru_maxrss)."""
    out = OUT / f"{name}.out"
    with open(out, "w") as stdout, open(OUT / f"{name}.log", "ab") as stderr:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": round(seconds, 2),
        "peak_mb": round(usage.ru_maxrss / 1024, 1),
        "returncode": proc.returncode,
        "stdout": out.read_text(),
    }


# --- Profiles -------------------------------------------------------------------------------

# What a request's time goes to, by the frames on its stacks: (label, pattern). Inclusive:
# a sample counts for every row whose pattern matches a frame anywhere on its stack.
_IN_VIEW = r"_get_response \(django/core/handlers/base\.py"
BUCKETS = [
    ("the view (everything inside Django's view call)", _IN_VIEW),
    ("DRF initial: authentication, permissions, throttle", r"APIView\.initial "),
    ("  API key lookup (api_key_get_by_raw_key)", r"api_key_get_by_raw_key"),
    ("  rate limit (Redis: one script call)", r"rate_take"),
    ("idempotency wrapper (whole)", r"idempotent\.<locals>\.wrapper"),
    ("  advisory lock + transaction (_exclusive)", r"_exclusive \("),
    ("  stored key lookup", r"wrapper \(payments/idempotency\.py:\d+\);QuerySet\.first"),
    ("  IdempotencyKey insert", r"idempotency\.py:\d+\);[^;]*manager_method[^;]*;QuerySet\.create"),
    ("PaymentListCreateApi.post", r"PaymentListCreateApi\.post"),
    ("  input serializer validation", r"post \(payments/apis\.py:\d+\);.*is_valid"),
    ("  payment_create service", r"payment_create \(payments/services"),
    ("  output serializer", r"apis\.py:\d+\);.*(Serializer\.data|to_representation)"),
    ("webhook view (receive)", r"receive \(webhooks/views\.py"),
    ("  webhook_receive service", r"webhook_receive \(webhooks/services"),
    ("  signature verification + identify", r"webhook_verify|webhook_identify"),
    ("  InboundWebhook insert",
     r"webhooks/services\.py:\d+\);[^;]*manager_method[^;]*;QuerySet\.create"),
    ("Celery publish after commit (enqueue_on_commit)", r"enqueue_on_commit\.<locals>\.send"),
    ("COMMIT", r"commit \(django/db/backends/base/base\.py"),
    ("any SQL: psycopg execute", r"execute \(psycopg/cursor\.py"),
    ("any SQL: ORM compiling it", r"as_sql \(django/db/models/sql/compiler\.py"),
    ("any Redis client call", r"redis/connection\.py"),
    ("DRF serializer construction (Field init/deepcopy)",
     r"Field\.__init__ \(rest_framework|Field\.__deepcopy__ \(rest_framework"),
    ("logging", r"logging/__init__\.py"),
    ("gunicorn access log", r"gunicorn/glogging\.py"),
]  # fmt: skip


def profile_summary(path: Path) -> dict:
    """Inclusive shares of the buckets above, and the functions that cost the most."""
    total = 0
    inclusive: Counter = Counter()
    own: Counter = Counter()
    buckets: Counter = Counter()
    compiled = [(label, re.compile(p)) for label, p in BUCKETS]
    in_django = re.compile(r"django/core/handlers/base\.py")
    in_view = re.compile(_IN_VIEW)
    outside_view = outside_django = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += n
        for frame in set(map(_short, frames)):
            inclusive[frame] += n
        own[_short(frames[-1])] += n
        joined = ";".join(frames)
        for label, pattern in compiled:
            if pattern.search(joined):
                buckets[label] += n
        if not in_django.search(joined):
            outside_django += n
        elif not in_view.search(joined):
            outside_view += n
    if not total:
        return {"samples": 0}

    def pct(n):
        return round(100 * n / total, 1)

    ours = re.compile(r"\((payments|webhooks|billing|subscriptions|payments_project)/")
    return {
        "samples": total,
        "buckets": [
            ("outside a Django request (gunicorn, or the Celery worker)", pct(outside_django)),
            ("middleware and Django's handler, outside the view", pct(outside_view)),
            *[(label, pct(buckets[label])) for label, _ in BUCKETS],
        ],
        "top_own": [(f, pct(n)) for f, n in own.most_common(25)],
        "top_ours": [(f, pct(n)) for f, n in inclusive.most_common() if ours.search(f)][:25],
    }


def _short(frame: str) -> str:
    # "func (/work/main/.venv/lib/python3.11/site-packages/django/x.py:12)" -> "func (django/x.py)"
    frame = re.sub(r"\((?:.*?/site-packages/|.*?/lib/python3\.\d+/|" + re.escape(str(ROOT)) + "/)",
                   "(", frame)  # fmt: skip
    return re.sub(r":\d+\)$", ")", frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run x 3 s, a 20k seed.")
    parser.add_argument("--scenarios", default="1,2,3,4,5,6", help="Which (default: all).")
    parser.add_argument("--workers", type=int, help="gunicorn workers (skips calibration).")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker.")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if bool(args.workers) != bool(args.threads):
        parser.error("--workers and --threads go together")
    for tool in ("wrk",):
        if not shutil.which(tool):
            parser.error(f"{tool} is missing: run `make bench` (scripts/ensure_wrk.sh)")
    OUT.mkdir(parents=True, exist_ok=True)
    plan = QUICK if args.quick else FULL
    bench = Bench(plan, args)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = None
    try:
        bench.run()
    except (BenchError, KeyboardInterrupt) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        say(f"stopped: {failed}")
    except Exception as exc:
        failed = f"{type(exc).__name__}: {exc}"
        say(f"stopped: {failed}\n{traceback.format_exc()}")
    finally:
        bench.procs.stop_all()
        bench.redis.flushdb()
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
    bench.results["failed"] = failed
    (OUT / "results.json").write_text(json.dumps(bench.results, indent=1, default=str))
    from bench.report import report_write

    report_write(bench.results, Path(args.out))
    say(f"wrote {args.out} (raw numbers: bench/out/results.json)")
    return 1 if failed else 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
