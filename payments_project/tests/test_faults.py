"""
Fault tolerance, with real processes: gunicorn, a Celery worker (prefork), Redis and
PostgreSQL. Every server a test breaks is private to this run (`servers.py`): its own
redis-server, its own PostgreSQL cluster; the shared ones are never touched.

- A worker killed with SIGKILL in the middle of a provider call, or of a merchant callback,
  loses nothing: once a worker runs again every payment reaches its final state and every
  event is delivered (the provider's work is not done twice: the same idempotency key).
- Redis down: the API keeps taking payments (201, stored; rate limits fail open) and reads;
  `/health/ready` is 503 naming the cache and the broker; when Redis is back, the sweeps
  send what could not be sent then. Redis hung (stopped, not gone): requests are slowed by
  the socket timeouts, never hung.
- PostgreSQL stopped and started under load: every request ends, as 201 or as a 503 in the
  error shape, none hangs or crashes a process; the same gunicorn workers serve again on
  their own, and retrying the refused requests with their idempotency keys loses nothing
  and doubles nothing.

What needs Redis: only the sending of Celery tasks and the rate-limit counters. Tasks are
sent after the commit and any that could not be sent are found by the periodic sweeps;
rate limits fail open. So no API request fails because Redis is away; a Redis (or broker)
error that still reaches a view is a 503 `service_unavailable`, as is a database outage.
"""

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
import requests
import stripe
from django.db import OperationalError as DatabaseError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from payments.models import Payment, PaymentEvent
from payments_project.tests.servers import (
    BASE_DIR,
    HoldingReceiver,
    HoldingStripe,
    PostgresCluster,
    RedisServer,
    Web,
    Worker,
    database_url,
    free_port,
    postgres_bindir,
    send_task,
    service_env,
    wait_for,
)
from webhooks.models import Delivery, DeliveryAttempt

pytestmark = pytest.mark.faults

STRIPE_SECRET_KEY = "sk_test_51FaultTestsFakeKey000000000000000000"
STRIPE_WEBHOOK_SECRET = "whsec_fault_tests_0123456789abcdef"
# A request that takes longer than this counts as hung.
REQUEST_TIMEOUT = 20


# --- In one process: what each failure becomes at the edge ---------------------------------

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.mark.django_db
def test_rate_limits_fail_open_while_the_cache_is_down(api, settings, monkeypatch, caplog):
    from payments import throttling

    monkeypatch.setattr(throttling, "_last_warned", float("-inf"))
    settings.API_RATE_LIMIT = "1/m"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": UNREACHABLE_REDIS}}
    body = {"amount": "10.00", "currency": "RUB"}

    answers = [api.post("/api/v1/payments", body, format="json") for _ in range(2)]

    assert [a.status_code for a in answers] == [201, 201]
    assert Payment.objects.count() == 2
    (warning,) = [r for r in caplog.records if r.name == "payments.throttling"]
    assert "not enforced" in warning.getMessage()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error, dependency",
    [
        (DatabaseError, "database"),
        (RedisConnectionError, "cache"),
        (RedisTimeoutError, "cache"),
        (BrokerError, "broker"),
    ],
)
def test_an_outage_reaching_an_api_view_is_a_503_in_the_error_shape(
    api, monkeypatch, error, dependency
):
    from payments.authentication import ApiKeyAuthentication

    def refused(self, request):
        raise error("connecting to 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(ApiKeyAuthentication, "authenticate", refused)

    response = api.get("/api/v1/payments")

    body = assert_unavailable(response, dependency)
    assert "127.0.0.1" not in body["error"]["message"]  # hosts stay in the log


@pytest.mark.django_db
def test_a_database_outage_outside_drf_is_a_503_in_the_error_shape(monkeypatch):
    from django.test import Client

    from webhooks import services as webhook_services

    def refused(**kwargs):
        raise DatabaseError("connection to server failed: Connection refused")

    monkeypatch.setattr(webhook_services, "webhook_receive", refused)

    response = Client(raise_request_exception=False).post(
        "/webhooks/sandbox", data=b"{}", content_type="application/json"
    )

    assert_unavailable(response, "database")


# --- Servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def redis_server(logdir):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(logdir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def redis_up(redis_server):
    """The private Redis, running again however the test ended."""
    yield redis_server
    if redis_server.process.running():
        redis_server.resume()
    else:
        redis_server.start()


@pytest.fixture(scope="module")
def stripe_fake():
    fake = HoldingStripe(secret_key=STRIPE_SECRET_KEY).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def app_env(django_db_setup, redis_server, stripe_fake):
    """Web and worker processes on this run's test database and the private Redis."""
    from django.db import connection

    return service_env(
        database_url=database_url(connection.settings_dict),
        redis_url=redis_server.url(0),
        web_port=free_port(),
        STRIPE_SECRET_KEY=STRIPE_SECRET_KEY,
        STRIPE_PUBLISHABLE_KEY="pk_test_51FaultTestsFakeKey000000000000000000",
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe_fake.url,
        WEBHOOK_ALLOW_PRIVATE_URLS="true",
        FAULTS_VISIBILITY_TIMEOUT="3",
    )


@pytest.fixture(scope="module")
def web(app_env, logdir):
    port = int(app_env["PUBLIC_BASE_URL"].rsplit(":", 1)[1])
    server = Web(app_env, logdir, port=port, workers=1, threads=4)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def start_worker(transactional_db, app_env, logdir):
    """Start a real worker (again and again: after a kill); all are gone when the test ends."""
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(app_env, logdir, name=f"w{uuid.uuid4().hex[:6]}")
        started.append(worker)  # before it starts: one that never gets ready is stopped too
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


class Api:
    """A client app calling the API over HTTP with a secret key."""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def post(self, path: str, body: dict | None = None, **headers) -> requests.Response:
        return self.session.post(
            self.base_url + path, json=body or {}, headers=headers, timeout=REQUEST_TIMEOUT
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=REQUEST_TIMEOUT)

    def endpoint_create(self, url: str, event_type: str) -> None:
        """Register a merchant callback endpoint for one event type."""
        created = self.post(
            "/api/v1/webhook_endpoints", {"url": url, "enabled_events": [event_type]}
        )
        assert created.status_code == 201, created.text


def assert_unavailable(response, *names: str) -> dict:
    """A 503 `service_unavailable` in the contract's error shape, naming `names`."""
    assert response.status_code == 503, response.text
    body = response.json()
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
    for name in names:
        assert name in error["message"]
    return body


def payment_with_checkout(payment_id: str, worker: Worker, timeout: float = 30) -> Payment:
    return wait_for(
        lambda: Payment.objects.filter(pk=payment_id).exclude(provider_checkout_url="").first(),
        timeout=timeout,
        what=f"payment {payment_id} to get its checkout",
        details=worker.log_tail,
    )


def timeline(payment_id: str) -> list[str]:
    return list(
        PaymentEvent.objects.filter(payment_id=payment_id)
        .order_by("pk")
        .values_list("type", flat=True)
    )


# --- A worker killed in the middle of its work ------------------------------------------------

KILLS = ["whole-worker", "pool-process"]


def kill_and_recover(kill: str, worker: Worker, start_worker) -> Worker:
    """
    `whole-worker`: kill -9 the worker and its pool (the machine died); its unacknowledged
    message comes back from the broker once its visibility timeout passes, to the worker
    started again here. `pool-process`: kill -9 the pool process only (the OOM killer); the
    worker sees it lost and puts the message back (`task_reject_on_worker_lost`).
    """
    if kill == "whole-worker":
        worker.kill()
        return start_worker()
    worker.kill_pool_process()
    return worker


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kill", KILLS)
def test_a_worker_killed_during_the_provider_call_still_gets_the_payment_paid(
    kill, web, start_worker, stripe_fake, receivers, secret_key
):
    worker = start_worker()
    api = Api(web.url, secret_key)
    receiver = receivers(200)
    api.endpoint_create(receiver.url, "payment.succeeded")
    stripe_fake.hold("/v1/checkout/sessions")

    created = api.post(
        "/api/v1/payments", {"amount": "599.00", "currency": "RUB", "provider": "stripe"}
    )
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    wait_for(stripe_fake.held.is_set, timeout=30, what="the checkout call", details=worker.log_tail)
    # Stripe has made the session; the worker dies before it hears the answer.
    worker = kill_and_recover(kill, worker, start_worker)
    stripe_fake.release()

    payment = payment_with_checkout(payment_id, worker)

    key = f"checkout-{payment_id}"
    calls = [r for r in stripe_fake.requests_to("POST", "/v1/checkout/sessions")
             if r.header("Idempotency-Key") == key]  # fmt: skip
    assert len(calls) == 2  # asked again, with the same key...
    sessions = [s for s in stripe_fake.sessions.values() if s["client_reference_id"] == payment_id]
    assert [s["id"] for s in sessions] == [payment.provider_checkout_id]  # ...so one checkout

    # The buyer pays; Stripe tells us; the worker settles the payment and calls the merchant.
    stripe_fake.complete_session(payment.provider_checkout_id)
    event = stripe_fake.event("checkout.session.completed", payment.provider_checkout_id)
    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(body, STRIPE_WEBHOOK_SECRET)
    received = requests.post(
        f"{web.url}/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=REQUEST_TIMEOUT,
    )
    assert received.status_code == 200, received.text

    wait_for(
        lambda: Payment.objects.filter(pk=payment_id, status="succeeded").exists(),
        timeout=30,
        what="the payment to succeed",
        details=worker.log_tail,
    )
    callbacks = wait_for(
        lambda: [r.json() for r in receiver.received],
        timeout=30,
        what="the payment.succeeded callback",
        details=worker.log_tail,
    )
    assert [(c["type"], c["data"]["object"]["id"]) for c in callbacks] == [
        ("payment.succeeded", payment_id)
    ]
    assert timeline(payment_id) == ["created", "checkout_created", "succeeded"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_during_a_callback_still_delivers_the_event(
    web, start_worker, redis_server, secret_key
):
    worker = start_worker()
    api = Api(web.url, secret_key)
    receiver = HoldingReceiver()
    try:
        api.endpoint_create(receiver.url, "payment.canceled")
        payment_id = api.post("/api/v1/payments", {"amount": "10.00", "currency": "RUB"}).json()[
            "id"
        ]
        payment_with_checkout(payment_id, worker)

        assert api.post(f"/api/v1/payments/{payment_id}/cancel").status_code == 200
        wait_for(receiver.held.is_set, timeout=30, what="the callback", details=worker.log_tail)
        # The receiver has the request; the worker dies before the answer, and starts again.
        worker = kill_and_recover("whole-worker", worker, start_worker)
        receiver.release()

        delivery = Delivery.objects.get(event__object_id=payment_id)
        assert (delivery.status, delivery.attempts) == ("pending", 0)
        # The dead attempt's lease (2 × timeout + 30 s) keeps the message that came back from
        # sending a second copy while the first might still be in flight...
        assert delivery.next_attempt_at > timezone.now()
        # ...until it runs out (compressed here), when beat's sweep sends it again.
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        send_task(redis_server.url(0), "webhooks.tasks.deliveries_dispatch_due")

        wait_for(
            lambda: Delivery.objects.filter(pk=delivery.pk, status="succeeded").exists(),
            timeout=30,
            what="the delivery to succeed",
            details=worker.log_tail,
        )
        # At least once, never zero: the receiver deduplicates on webhook-id.
        assert len(set(receiver.event_ids())) == 1
        assert len(receiver.received) == 2
        assert receiver.received[-1].json()["data"]["object"]["id"] == payment_id
        attempts = DeliveryAttempt.objects.filter(delivery=delivery)
        assert [a.status_code for a in attempts] == [200]
    finally:
        receiver.close()


# --- Redis down, Redis hung -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_the_api_keeps_taking_payments_and_nothing_is_lost(
    web, start_worker, redis_up, receivers, secret_key
):
    redis = redis_up
    worker = start_worker()
    api = Api(web.url, secret_key)
    receiver = receivers(200)
    api.endpoint_create(receiver.url, "payment.canceled")
    earlier = api.post("/api/v1/payments", {"amount": "10.00", "currency": "RUB"}).json()["id"]
    payment_with_checkout(earlier, worker)
    assert api.get("/health/ready").status_code == 200

    redis.crash()

    ready = api.get("/health/ready")
    body = assert_unavailable(ready, "cache", "broker")
    assert body["checks"]["cache"]["status"] == body["checks"]["broker"]["status"] == "error"
    assert body["checks"]["database"]["status"] == "ok"
    # Taking a payment needs only the database: it is stored, its provider call waits.
    created = api.post(
        "/api/v1/payments", {"amount": "20.00", "currency": "RUB"}, **{"Idempotency-Key": "k-1"}
    )
    assert created.status_code == 201, created.text
    during = created.json()["id"]
    replay = api.post(
        "/api/v1/payments", {"amount": "20.00", "currency": "RUB"}, **{"Idempotency-Key": "k-1"}
    )
    assert (replay.status_code, replay.headers.get("Idempotent-Replayed")) == (201, "true")
    assert replay.content == created.content
    assert api.get(f"/api/v1/payments/{during}").json()["status"] == "pending"
    # A change announced to the merchant is recorded; its callback waits.
    assert api.post(f"/api/v1/payments/{earlier}/cancel").status_code == 200
    delivery = Delivery.objects.get(event__object_id=earlier)
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert Payment.objects.get(pk=during).provider_checkout_url == ""

    redis.start()  # empty: whatever it held is gone

    wait_for(
        lambda: api.get("/health/ready").status_code == 200,
        timeout=30,
        what="/health/ready to recover",
        details=web.process.log_tail,
    )
    # Beat's sweeps find what was never sent. The checkout sweep leaves a payment alone for
    # two minutes (its task may still be on its way): that wait is compressed here.
    Payment.objects.filter(pk=during).update(created_at=timezone.now() - timedelta(minutes=3))
    send_task(redis.url(0), "payments.tasks.payments_sweep_awaiting_checkout")
    send_task(redis.url(0), "webhooks.tasks.deliveries_dispatch_due")

    # The worker reconnects by itself, backing off 2, 4, 6… seconds between tries.
    payment_with_checkout(during, worker, timeout=60)
    callbacks = wait_for(
        lambda: [r.json() for r in receiver.received],
        timeout=30,
        what="the payment.canceled callback",
        details=worker.log_tail,
    )
    assert [(c["type"], c["data"]["object"]["id"]) for c in callbacks] == [
        ("payment.canceled", earlier)
    ]
    # And the API sends new work straight to the worker again.
    after = api.post("/api/v1/payments", {"amount": "30.00", "currency": "RUB"}).json()["id"]
    payment_with_checkout(after, worker)


@pytest.mark.django_db(transaction=True)
def test_a_hung_redis_slows_requests_down_but_never_hangs_them(web, redis_up, secret_key):
    redis = redis_up
    api = Api(web.url, secret_key)
    assert api.get("/health/ready").status_code == 200

    redis.pause()  # accepts connections, never answers

    started = time.monotonic()
    created = api.post("/api/v1/payments", {"amount": "20.00", "currency": "RUB"})
    assert created.status_code == 201, created.text
    assert time.monotonic() - started < 15  # the socket timeouts, three publish tries
    started = time.monotonic()
    assert_unavailable(api.get("/health/ready"), "cache", "broker")
    assert time.monotonic() - started < 10
    assert Payment.objects.filter(pk=created.json()["id"], status="pending").exists()

    redis.resume()

    wait_for(
        lambda: api.get("/health/ready").status_code == 200,
        timeout=30,
        what="/health/ready to recover",
        details=web.process.log_tail,
    )


# --- PostgreSQL restarted under load ----------------------------------------------------------


@pytest.fixture
def pg_cluster():
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("The PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PostgresCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class Load:
    """Threads that create payments without pause, each request with its own key."""

    def __init__(self, base_url: str, key: str, threads: int):
        self.base_url = base_url
        self.key = key
        self.results: list[dict] = []  # {at, key, status, body, seconds, error}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)

    def _run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        while not self._stop.is_set():
            key = uuid.uuid4().hex
            started = time.monotonic()
            result = {"at": started, "key": key, "status": None, "body": None, "error": None}
            try:
                response = session.post(
                    f"{self.base_url}/api/v1/payments",
                    json={"amount": "5.00", "currency": "RUB"},
                    headers={"Idempotency-Key": key},
                    timeout=REQUEST_TIMEOUT,
                )
                result["status"] = response.status_code
                result["body"] = response.text
            except requests.RequestException as exc:
                result["error"] = f"{type(exc).__name__}: {exc}"
            result["seconds"] = time.monotonic() - started
            with self._lock:
                self.results.append(result)
            if result["status"] != 201:
                self._stop.wait(0.05)  # a client backs off a little before its next try
        session.close()

    def count(self, status: int, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for r in self.results if r["status"] == status and r["at"] >= since)


# An operator's first steps on a new database: migrate, then a merchant and its keys.
SETUP_SCRIPT = """
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("create_merchant", "Load Shop", as_json=True)
"""


def test_postgres_restarted_under_load_the_service_recovers_by_itself(
    pg_cluster, redis_server, logdir
):
    with psycopg.connect(pg_cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE payments")
    port = free_port()
    env = service_env(
        database_url=pg_cluster.url("payments"), redis_url=redis_server.url(1), web_port=port
    )
    # Migrating and booting gunicorn (which touches the database only when asked) overlap.
    setup = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", SETUP_SCRIPT],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    web = Web(env, logdir, port=port, workers=2, threads=2)
    try:
        web.start()
        output, _ = setup.communicate(timeout=120)
        assert setup.returncode == 0, output
        key = json.loads(output.strip().splitlines()[-1])["secret_key"]
        _restart_under_load(pg_cluster, web, key)
    finally:
        setup.kill()
        web.stop()


def _restart_under_load(pg_cluster, web: Web, key: str) -> None:
    gunicorn_workers = web.worker_pids()
    load = Load(web.url, key, threads=4)
    try:
        load.start()
        wait_for(lambda: load.count(201) >= 10, timeout=30, what="payments under load",
                 details=web.process.log_tail)  # fmt: skip

        pg_cluster.stop("fast")  # sessions are terminated mid-request; new ones refused
        down = time.monotonic()
        wait_for(
            lambda: load.count(503, since=down) >= 5,
            timeout=30,
            what="503s while PostgreSQL is down",
            details=web.process.log_tail,
        )
        ready = requests.get(f"{web.url}/health/ready", timeout=REQUEST_TIMEOUT)
        body = assert_unavailable(ready, "database")
        assert body["checks"]["database"]["status"] == "error"
        # Outside DRF too (the inbox stores every request first): 503, not a 500 page.
        inbox = requests.post(f"{web.url}/webhooks/sandbox", data=b"{}", timeout=REQUEST_TIMEOUT)
        assert_unavailable(inbox, "database")

        pg_cluster.start()
        up = time.monotonic()
        wait_for(
            lambda: load.count(201, since=up) >= 10,
            timeout=30,
            what="payments again once PostgreSQL is back",
            details=lambda: web.process.log_tail() + "\n" + pg_cluster.log_tail(),
        )
    finally:
        load.stop()

    results = load.results
    statuses = Counter(r["status"] for r in results)
    assert [r["error"] for r in results if r["error"]] == []  # nothing hung or was cut off
    assert set(statuses) <= {201, 503}, statuses
    assert max(r["seconds"] for r in results) < 10
    for refused in (r for r in results if r["status"] == 503):
        error = json.loads(refused["body"])["error"]
        assert (error["code"], error["type"]) == ("service_unavailable", "api_error")
    # The same processes recovered: no gunicorn worker crashed or was replaced.
    assert web.worker_pids() == gunicorn_workers

    # Nothing lost, nothing doubled: a client retries each refused request with its key.
    retry = Api(web.url, key)
    for refused in (r for r in results if r["status"] == 503):
        again = retry.post(
            "/api/v1/payments",
            {"amount": "5.00", "currency": "RUB"},
            **{"Idempotency-Key": refused["key"]},
        )
        assert again.status_code == 201, again.text
    with psycopg.connect(pg_cluster.url("payments")) as conn:
        stored = conn.execute("SELECT count(*) FROM payments_payment").fetchone()[0]
    assert stored == len(results)
