"""
Merchant callbacks, seen from the merchant's side: events written with the change they
announce, endpoints managed over the API, and deliveries signed per Standard Webhooks,
retried on a schedule, recorded attempt by attempt and recovered by the sweep.

A small HTTP server on 127.0.0.1 plays the merchant's receiver. Signatures are checked
with the `standardwebhooks` package, as a receiver would check them, never with our own
signing code. Time is moved by shifting the stored schedule (`_time_passes`), not by
sleeping.
"""

import io
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from conftest import client_for, run_concurrently, task_sends
from payments import services as payment_services
from payments.models import Payment
from payments.tests.factories import APIKeyFactory, MerchantFactory, PaymentFactory
from payments.tests.test_authentication import assert_error
from payments.tests.test_sandbox_flow import Buyer, create_payment
from webhooks import callbacks, tasks
from webhooks.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from webhooks.tests.receivers import Received

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook_endpoints"
EVENTS = "/api/v1/events"
DAY = 24 * 3600
REFUSED_URL = "http://127.0.0.1:9/hooks"  # the discard port: nothing listens, connect is refused


# --- Helpers ------------------------------------------------------------------------------


def _verify(secret: str, request: Received) -> dict:
    """What a receiver does first: check the signature with a Standard Webhooks library."""
    return Webhook(secret).verify(request.body, request.headers)


def _endpoint(merchant, url: str, events=("*",), *, livemode: bool = False) -> WebhookEndpoint:
    return callbacks.endpoint_create(
        merchant=merchant, url=url, enabled_events=list(events), livemode=livemode
    )


def _moves(payment: Payment, to_status: str) -> Payment:
    """A payment changes state in its own transaction, as a provider webhook would make it."""
    changes = {"amount_captured": payment.amount} if to_status == "succeeded" else {}
    with transaction.atomic():
        return payment_services.payment_transition(
            payment=payment_services.payment_lock(payment.pk),
            to_status=to_status,
            source="provider",
            **changes,
        )


def _happens(capture_callbacks, payment: Payment, *statuses: str) -> Payment:
    """The changes commit, and what they enqueued on commit (the deliveries) runs."""
    for status in statuses:
        with capture_callbacks(execute=True):
            payment = _moves(payment, status)
    return payment


def _time_passes(seconds: float) -> None:
    """Pending deliveries come due as if `seconds` had gone by."""
    Delivery.objects.filter(status=Delivery.Status.PENDING).update(
        next_attempt_at=F("next_attempt_at") - timedelta(seconds=seconds)
    )


def _sweep() -> int:
    """The beat's periodic task: sends every due delivery; returns how many were due."""
    return tasks.deliveries_dispatch_due()


def _statuses(delivery: Delivery) -> list[int | None]:
    return [attempt.status_code for attempt in delivery.attempt_log.all()]


def _create(api, url: str, events=("*",), **extra):
    return api.post(ENDPOINTS, {"url": url, "enabled_events": list(events), **extra}, format="json")


# --- Must show: a sandbox payment's callback, end to end over real HTTP --------------------


@pytest.fixture
def live(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_payment_calls_back_exactly_the_subscribed_event(live, merchant, receivers):
    receiver = receivers(200)
    api = client_for(APIKeyFactory(merchant=merchant).raw_key)
    only_succeeded = _create(api, f"{receiver.url}/succeeded", ["payment.succeeded"])
    everything = _create(api, f"{receiver.url}/all", ["*"])
    assert (only_succeeded.status_code, everything.status_code) == (201, 201)
    secret = only_succeeded.json()["secret"]
    paid = create_payment(api)
    declined = create_payment(api)

    Buyer().pay(paid["checkout_url"], "4242 4242 4242 4242")
    Buyer().pay(declined["checkout_url"], "4000 0000 0000 0002")

    ours = [request for request in receiver.received if request.path == "/succeeded"]
    assert len(ours) == 1
    request = ours[0]
    body = _verify(secret, request)  # raises unless the signature is right and fresh
    assert body["type"] == "payment.succeeded"
    assert body["data"]["object"]["id"] == paid["id"]
    assert body["data"]["object"]["status"] == "succeeded"
    event = api.get(f"{EVENTS}/{body['id']}").json()
    assert request.headers["webhook-id"] == body["id"] == event["id"]
    assert set(body) == {"id", "type", "created", "data"}
    assert body == {key: event[key] for key in ("id", "type", "created", "data")}
    assert request.headers["content-type"] == "application/json"
    # The catch-all endpoint heard about the declined payment too; the first one did not.
    theirs = [r.json() for r in receiver.received if r.path == "/all"]
    assert sorted((b["type"], b["data"]["object"]["id"]) for b in theirs) == sorted(
        [("payment.succeeded", paid["id"]), ("payment.failed", declined["id"])]
    )
    with pytest.raises(WebhookVerificationError):
        _verify(everything.json()["secret"], request)  # each endpoint signs with its own


# --- Must show: 500, 500, 500, then 200 ---------------------------------------------------


def test_a_receiver_failing_three_times_gets_it_on_the_fourth_attempt(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(500, 500, 500, 200)
    endpoint = _endpoint(merchant, f"{receiver.url}/hooks", ["payment.succeeded"])
    payment = _happens(
        django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded"
    )
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)

    for wait in settings.WEBHOOK_RETRY_SCHEDULE[:3]:
        _time_passes(wait * 1.1 + 1)
        assert _sweep() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 4)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    attempts = list(delivery.attempt_log.all())
    assert [a.status_code for a in attempts] == [500, 500, 500, 200]
    assert [a.response_excerpt for a in attempts] == [
        "answer 1: 500", "answer 2: 500", "answer 3: 500", "answer 4: 200",
    ]  # fmt: skip
    assert all(a.duration_ms >= 0 and a.error == "" for a in attempts)
    assert [a.attempted_at for a in attempts] == sorted(a.attempted_at for a in attempts)
    # The same event each time, freshly signed each time.
    assert len(receiver.received) == 4
    assert {_verify(endpoint.secret, r)["id"] for r in receiver.received} == {delivery.event_id}
    assert {r.json()["data"]["object"]["id"] for r in receiver.received} == {payment.pk}
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and not endpoint.disabled


def test_the_response_excerpt_is_bounded(merchant, receivers, django_capture_on_commit_callbacks):
    receiver = receivers((500, b"x" * 50_000))
    _endpoint(merchant, receiver.url)

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    attempt = DeliveryAttempt.objects.get()
    assert attempt.status_code == 500
    assert attempt.response_excerpt == "x" * callbacks.RESPONSE_EXCERPT_LENGTH


# --- Retry timing ---------------------------------------------------------------------------


def test_retries_follow_the_schedule_with_jitter_then_stop(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = [10, 100, 1000]
    receiver = receivers(503)
    _endpoint(merchant, receiver.url)
    before = timezone.now()
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    after = timezone.now()

    for failures, wait in enumerate(settings.WEBHOOK_RETRY_SCHEDULE, start=1):
        delivery = Delivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("pending", failures)
        # Due `wait` seconds after the failure, plus up to 10 % jitter.
        assert before + timedelta(seconds=wait) <= delivery.next_attempt_at
        assert delivery.next_attempt_at <= after + timedelta(seconds=wait * 1.1)
        _time_passes(wait * 0.95)
        assert _sweep() == 0  # not due yet
        _time_passes(wait * 0.2)
        before = timezone.now()
        assert _sweep() == 1
        after = timezone.now()

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 4, None)
    assert _statuses(delivery) == [503] * 4
    _time_passes(30 * DAY)
    assert _sweep() == 0
    assert callbacks.delivery_attempt(delivery_id=delivery.pk) is None
    assert len(receiver.received) == 4


def test_jitter_spreads_retries_of_one_event_over_many_endpoints(
    settings, merchant, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = [1000]
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    for _ in range(8):
        _endpoint(merchant, REFUSED_URL)

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    waits = [
        (d.next_attempt_at - d.last_attempt_at).total_seconds() for d in Delivery.objects.all()
    ]
    assert len(waits) == 8
    assert all(1000 <= wait <= 1100 + 5 for wait in waits)
    assert max(waits) - min(waits) > 5  # not one wave


def test_the_default_schedule_retries_for_about_three_days(settings):
    total = sum(settings.WEBHOOK_RETRY_SCHEDULE)
    assert 2.5 * DAY <= total <= 3.5 * DAY
    assert sorted(settings.WEBHOOK_RETRY_SCHEDULE) == settings.WEBHOOK_RETRY_SCHEDULE


# --- Timeouts, refused connections, redirects ---------------------------------------------


def test_a_receiver_too_slow_to_answer_is_a_failed_attempt_and_retried(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver = receivers(200, delay=1.5)
    _endpoint(merchant, receiver.url)

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    delivery = Delivery.objects.get()
    attempt = delivery.attempt_log.get()
    assert attempt.status_code is None
    assert "Timeout" in attempt.error
    assert attempt.duration_ms >= 300
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.next_attempt_at > timezone.now()

    receiver.delay = 0
    _time_passes(DAY)
    assert _sweep() == 1
    delivery.refresh_from_db()
    assert (delivery.status, _statuses(delivery)) == ("succeeded", [None, 200])
    # It did reach the receiver the first time: receivers deduplicate on webhook-id.
    assert receiver.event_ids() == [delivery.event_id] * 2


def test_a_refused_connection_is_a_failed_attempt_and_retried(
    settings, merchant, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    _endpoint(merchant, REFUSED_URL)

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    _time_passes(DAY)
    assert _sweep() == 1

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    for attempt in delivery.attempt_log.all():
        assert attempt.status_code is None
        assert attempt.error.startswith("ConnectionError")
    assert delivery.next_attempt_at > timezone.now()


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(302)
    _endpoint(merchant, f"{receiver.url}/hooks")

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    assert [r.path for r in receiver.received] == ["/hooks"]  # never /somewhere-else
    delivery = Delivery.objects.get()
    assert (delivery.status, _statuses(delivery)) == ("pending", [302])


# --- Nothing is lost ------------------------------------------------------------------------


def test_a_receiver_down_for_a_while_gets_everything_once_it_is_back(
    merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(503)
    endpoint = _endpoint(merchant, receiver.url, ["payment.succeeded"])
    payments = [
        _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
        for _ in range(3)
    ]
    assert len(receiver.received) == 3  # each tried once, each refused

    receiver.answer(200)
    _time_passes(DAY)
    assert _sweep() == 3

    after_recovery = receiver.received[3:]
    assert sorted(r.headers["webhook-id"] for r in after_recovery) == sorted(
        Event.objects.values_list("id", flat=True)
    )
    assert sorted(_verify(endpoint.secret, r)["data"]["object"]["id"] for r in after_recovery) == (
        sorted(p.pk for p in payments)
    )
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    _time_passes(30 * DAY)
    assert _sweep() == 0
    assert len(receiver.received) == 6


def test_a_delivery_whose_task_was_lost_is_sent_by_the_sweep(
    merchant, receiver, django_capture_on_commit_callbacks
):
    endpoint = _endpoint(merchant, receiver.url)
    with django_capture_on_commit_callbacks() as enqueued:  # committed, never run: lost
        _moves(PaymentFactory(merchant=merchant), "succeeded")
    assert len(task_sends(enqueued)) == 1 and receiver.received == []

    assert _sweep() == 1

    assert len(receiver.received) == 1
    assert _verify(endpoint.secret, receiver.received[0])["type"] == "payment.succeeded"
    assert Delivery.objects.get().status == "succeeded"


class WorkerKilled(BaseException):
    """A worker process dying mid-send (no `except Exception` catches it)."""


def test_a_worker_killed_mid_send_loses_nothing(
    settings, merchant, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    endpoint = _endpoint(merchant, receiver.url)
    with django_capture_on_commit_callbacks():  # the worker takes the task...
        _moves(PaymentFactory(merchant=merchant), "succeeded")
    delivery = Delivery.objects.get()

    def die(*args, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as patched:
        patched.setattr("webhooks.callbacks.requests.post", die)
        with pytest.raises(WorkerKilled):  # ...claims the attempt, and dies sending it
            callbacks.delivery_attempt(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert DeliveryAttempt.objects.count() == 0
    assert _sweep() == 0  # its lease has not run out: nobody else sends meanwhile
    _time_passes(settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 31)  # the lease runs out

    assert _sweep() == 1

    assert len(receiver.received) == 1
    assert _verify(endpoint.secret, receiver.received[0])["id"] == delivery.event_id
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


# --- Concurrency ------------------------------------------------------------------------------


def _due_delivery(url: str) -> Delivery:
    merchant = MerchantFactory()
    endpoint = _endpoint(merchant, url)
    event = Event.objects.create(
        merchant=merchant, type="payment.succeeded", object_id="pay_x", data={"id": "pay_x"}
    )
    return Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now())


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_one_due_delivery_send_it_once(receivers):
    receiver = receivers(200, delay=0.05)
    deliveries = []

    for _ in range(10):  # the race is a matter of microseconds: run it a few times
        delivery = _due_delivery(receiver.url)
        deliveries.append(delivery)
        # The task enqueued on commit, the beat's sweep and redelivered tasks, all at once.
        workers = iter(
            [lambda delivery=delivery: callbacks.delivery_attempt(delivery_id=delivery.pk), _sweep]
            * 3
        )
        run_concurrently(6, lambda workers=workers: next(workers)())
        assert receiver.event_ids().count(delivery.event_id) == 1

    for delivery in deliveries:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("succeeded", 1)
        assert delivery.attempt_log.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_worker_waiting_on_anothers_claim_does_not_send_again(receivers):
    receiver = receivers(200, delay=0.5)
    delivery = _due_delivery(receiver.url)
    results = {}

    def first():
        # The first worker's claim is still uncommitted when the second one's arrives: the
        # same moment autocommit leaves open for a few microseconds, held open here.
        try:
            with transaction.atomic():
                results["first"] = callbacks.delivery_attempt(delivery_id=delivery.pk)
        finally:
            connection.close()

    def second():
        try:
            results["second"] = callbacks.delivery_attempt(delivery_id=delivery.pk)
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    deadline = time.monotonic() + 5
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.01)  # the first worker has claimed it and is sending
    two = threading.Thread(target=second)
    two.start()
    one.join()
    two.join()

    assert results["first"] is not None
    assert results["second"] is None
    assert len(receiver.received) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


# --- Events: the outbox and the API -----------------------------------------------------------


def test_events_are_written_with_the_change_and_not_without_it(
    merchant, receiver, django_capture_on_commit_callbacks
):
    _endpoint(merchant, receiver.url)
    payment = PaymentFactory(merchant=merchant)

    with (
        django_capture_on_commit_callbacks(execute=True) as enqueued,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        _moves(payment, "succeeded")
        raise RuntimeError("something later in the same transaction fails")

    assert Event.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert enqueued == []
    assert receiver.received == []
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_events_list_newest_first_and_filter_by_type(
    api, merchant, django_capture_on_commit_callbacks
):
    paid = _happens(
        django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded"
    )
    declined = _happens(
        django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "failed"
    )
    held = _happens(
        django_capture_on_commit_callbacks,
        PaymentFactory(merchant=merchant, capture=False),
        "requires_capture",
        "canceled",
    )

    listed = api.get(EVENTS).json()
    failed_only = api.get(EVENTS, {"type": "payment.failed"}).json()

    assert [(e["type"], e["data"]["object"]["id"]) for e in listed["results"]] == [
        ("payment.canceled", held.pk),
        ("payment.requires_capture", held.pk),
        ("payment.failed", declined.pk),
        ("payment.succeeded", paid.pk),
    ]
    assert listed["next"] is None
    assert [e["data"]["object"]["id"] for e in failed_only["results"]] == [declined.pk]
    first = listed["results"][-1]
    assert set(first) == {"id", "object", "type", "created", "livemode", "data"}
    assert (first["object"], first["livemode"]) == ("event", False)
    assert first["id"].startswith("evt_")


def test_an_event_holds_the_payment_as_the_api_rendered_it_then(
    api, merchant, django_capture_on_commit_callbacks
):
    payment = _happens(
        django_capture_on_commit_callbacks,
        PaymentFactory(merchant=merchant, capture=False),
        "requires_capture",
    )
    rendered_then = api.get(f"/api/v1/payments/{payment.pk}").json()
    _happens(django_capture_on_commit_callbacks, payment, "canceled")
    rendered_now = api.get(f"/api/v1/payments/{payment.pk}").json()
    held, canceled = Event.objects.order_by("id")

    assert api.get(f"{EVENTS}/{held.pk}").json()["data"]["object"] == rendered_then
    assert api.get(f"{EVENTS}/{canceled.pk}").json()["data"]["object"] == rendered_now
    assert rendered_then["status"] == "requires_capture"  # a snapshot, not the payment today


def test_events_belong_to_their_merchant_and_mode(
    api, other_api, publishable_api, merchant, django_capture_on_commit_callbacks
):
    test_payment = PaymentFactory(merchant=merchant)
    live_payment = PaymentFactory(merchant=merchant, livemode=True)
    _happens(django_capture_on_commit_callbacks, test_payment, "succeeded")
    _happens(django_capture_on_commit_callbacks, live_payment, "succeeded")
    test_event = Event.objects.get(object_id=test_payment.pk)
    live_event = Event.objects.get(object_id=live_payment.pk)
    live_api = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)

    assert [e["id"] for e in api.get(EVENTS).json()["results"]] == [test_event.pk]
    assert [e["id"] for e in live_api.get(EVENTS).json()["results"]] == [live_event.pk]
    assert live_api.get(f"{EVENTS}/{live_event.pk}").json()["livemode"] is True
    assert_error(
        api.get(f"{EVENTS}/{live_event.pk}"), 404, "resource_missing", "invalid_request_error"
    )
    assert_error(
        other_api.get(f"{EVENTS}/{test_event.pk}"), 404, "resource_missing", "invalid_request_error"
    )
    assert other_api.get(EVENTS).json()["results"] == []
    assert_error(publishable_api.get(EVENTS), 403, "permission_denied", "permission_error")
    assert_error(api.get(f"{EVENTS}/evt_nope"), 404, "resource_missing", "invalid_request_error")


def test_an_endpoint_hears_only_its_own_mode(
    merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(200)
    _endpoint(merchant, f"{receiver.url}/test")
    _endpoint(merchant, f"{receiver.url}/live", livemode=True)
    _endpoint(MerchantFactory(), f"{receiver.url}/other-merchant")

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    _happens(
        django_capture_on_commit_callbacks,
        PaymentFactory(merchant=merchant, livemode=True),
        "succeeded",
    )

    heard = sorted((r.path, r.json()["data"]["object"]["livemode"]) for r in receiver.received)
    assert heard == [("/live", True), ("/test", False)]


# --- Endpoints API ------------------------------------------------------------------------------


def test_the_secret_is_shown_once_on_create(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False

    response = _create(api, "https://93.184.216.34/hooks", ["payment.succeeded", "payment.failed"])

    assert response.status_code == 201, response.content
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    Webhook(secret)  # a receiver's library takes it as it is
    assert created["id"].startswith("we_")
    assert created["object"] == "webhook_endpoint"
    assert created["url"] == "https://93.184.216.34/hooks"
    assert created["enabled_events"] == ["payment.failed", "payment.succeeded"]
    assert (created["status"], created["disabled_reason"]) == ("enabled", None)
    detail = api.get(f"{ENDPOINTS}/{created['id']}")
    listed = api.get(ENDPOINTS)
    for response in (detail, listed):
        assert response.status_code == 200
        assert secret not in response.content.decode()
        assert "secret" not in response.content.decode()
    assert [e["id"] for e in listed.json()["results"]] == [created["id"]]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",
        "http://localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://172.16.5.4/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hooks",
        "http://0.0.0.0/hooks",
    ],
)
def test_private_addresses_are_refused_unless_allowed(api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False

    refused = _create(api, url)

    error = assert_error(refused, 400, "parameter_invalid", "invalid_request_error")
    assert error["param"] == "url"
    assert not WebhookEndpoint.objects.exists()

    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    accepted = _create(api, url)
    assert accepted.status_code == 201, accepted.content


@pytest.mark.parametrize("allowed", [False, True])
@pytest.mark.parametrize(
    "url", ["ftp://93.184.216.34/hooks", "file:///etc/passwd", "gopher://93.184.216.34/", "hooks"]
)
def test_only_http_urls_are_accepted(api, settings, url, allowed):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = allowed

    response = _create(api, url)

    assert assert_error(response, 400, "parameter_invalid", "invalid_request_error")["param"] == (
        "url"
    )
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "events", [["payment.exploded"], ["payment.succeeded", "nope"], [], "payment.succeeded"]
)
def test_event_types_must_be_known(api, events):
    response = api.post(
        ENDPOINTS, {"url": "https://93.184.216.34/", "enabled_events": events}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "enabled_events"
    assert not WebhookEndpoint.objects.exists()


def test_update_events_disable_and_enable(api):
    created = _create(api, "https://93.184.216.34/hooks", ["payment.succeeded"]).json()
    url = f"{ENDPOINTS}/{created['id']}"

    changed = api.patch(url, {"enabled_events": ["*"], "description": "all"}, format="json")
    disabled = api.patch(url, {"disabled": True}, format="json")
    shown = api.get(url).json()
    enabled = api.patch(url, {"disabled": False}, format="json")

    assert changed.status_code == 200, changed.content
    assert (changed.json()["enabled_events"], changed.json()["description"]) == (["*"], "all")
    assert disabled.json()["status"] == shown["status"] == "disabled"
    assert shown["disabled_reason"] == "Disabled by the merchant."
    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("enabled", None)
    assert "secret" not in changed.json()
    bad_url = api.patch(url, {"url": "http://10.0.0.1/"}, format="json")
    assert assert_error(bad_url, 400, "parameter_invalid", "invalid_request_error")["param"] == (
        "url"
    )
    bad_events = api.patch(url, {"enabled_events": ["nope"]}, format="json")
    assert assert_error(bad_events, 400, "parameter_invalid", "invalid_request_error")["param"] == (
        "enabled_events"
    )
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.url, endpoint.enabled_events) == ("https://93.184.216.34/hooks", ["*"])


def test_delete_then_it_is_gone(api):
    created = _create(api, "https://93.184.216.34/hooks").json()
    url = f"{ENDPOINTS}/{created['id']}"

    deleted = api.delete(url)

    assert deleted.status_code == 200
    assert deleted.json() == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    assert_error(api.get(url), 404, "resource_missing", "invalid_request_error")
    assert_error(api.delete(url), 404, "resource_missing", "invalid_request_error")
    assert api.get(ENDPOINTS).json()["results"] == []


def test_another_merchants_endpoint_is_not_found(api, other_api, publishable_api):
    created = _create(api, "https://93.184.216.34/hooks", ["payment.succeeded"]).json()
    url = f"{ENDPOINTS}/{created['id']}"

    for response in (
        other_api.get(url),
        other_api.patch(url, {"enabled_events": ["*"]}, format="json"),
        other_api.post(f"{url}/rotate_secret"),
        other_api.delete(url),
    ):
        assert_error(response, 404, "resource_missing", "invalid_request_error")
    assert other_api.get(ENDPOINTS).json()["results"] == []
    for response in (publishable_api.get(ENDPOINTS), _create(publishable_api, "https://1.1.1.1/")):
        assert_error(response, 403, "permission_denied", "permission_error")
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.enabled_events, endpoint.secret) == (["payment.succeeded"], created["secret"])


# --- SSRF at delivery time ------------------------------------------------------------------------


def test_a_private_url_is_refused_again_when_sending(
    settings, merchant, receiver, django_capture_on_commit_callbacks
):
    _endpoint(merchant, receiver.url)  # saved while private URLs were allowed
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    assert receiver.received == []
    delivery = Delivery.objects.get()
    attempt = delivery.attempt_log.get()
    assert attempt.status_code is None
    assert "127.0.0.1" in attempt.error
    assert (delivery.status, delivery.attempts) == ("pending", 1)


# --- Secret rotation ------------------------------------------------------------------------------


def test_after_rotation_both_secrets_verify_until_the_grace_period_ends(
    api, merchant, receiver, django_capture_on_commit_callbacks
):
    created = _create(api, receiver.url, ["payment.succeeded"]).json()
    old = created["secret"]

    rotated = api.post(f"{ENDPOINTS}/{created['id']}/rotate_secret")

    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert "secret" not in api.get(f"{ENDPOINTS}/{created['id']}").json()
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    during_grace = receiver.received[-1]
    assert _verify(new, during_grace)["type"] == "payment.succeeded"
    assert _verify(old, during_grace)["type"] == "payment.succeeded"

    WebhookEndpoint.objects.update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    after_grace = receiver.received[-1]
    assert after_grace is not during_grace
    assert _verify(new, after_grace)["type"] == "payment.succeeded"
    with pytest.raises(WebhookVerificationError):
        _verify(old, after_grace)


def test_the_grace_period_is_a_setting(api, settings):
    settings.WEBHOOK_SECRET_ROTATION_GRACE_HOURS = 6
    created = _create(api, "https://93.184.216.34/hooks").json()

    before = timezone.now()
    api.post(f"{ENDPOINTS}/{created['id']}/rotate_secret")

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.previous_secret == created["secret"]
    expires = endpoint.previous_secret_expires_at
    assert before + timedelta(hours=6) <= expires <= timezone.now() + timedelta(hours=6)


# --- An endpoint failing for days is disabled -----------------------------------------------


def test_an_endpoint_failing_for_days_is_disabled_and_says_why(
    api, settings, merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(500)
    created = _create(api, receiver.url, ["payment.succeeded"]).json()
    days = settings.WEBHOOK_DISABLE_AFTER_DAYS
    WebhookEndpoint.objects.update(failing_since=timezone.now() - timedelta(days=days, hours=1))

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    shown = api.get(f"{ENDPOINTS}/{created['id']}").json()
    assert shown["status"] == "disabled"
    assert f"{days} days" in shown["disabled_reason"]
    # What is owed waits, untouched, while it is off.
    receiver.answer(200)
    _time_passes(DAY)
    assert _sweep() == 0
    delivery = Delivery.objects.get()
    assert callbacks.delivery_attempt(delivery_id=delivery.pk) is None
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert len(receiver.received) == 1

    with django_capture_on_commit_callbacks(execute=True):
        enabled = api.patch(f"{ENDPOINTS}/{created['id']}", {"disabled": False}, format="json")

    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("enabled", None)
    assert len(receiver.received) == 2
    assert _verify(created["secret"], receiver.received[-1])["id"] == delivery.event_id
    delivery.refresh_from_db()
    assert (delivery.status, _statuses(delivery)) == ("succeeded", [500, 200])


def test_an_endpoint_failing_for_less_than_that_stays_enabled(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(500)
    endpoint = _endpoint(merchant, receiver.url)
    days = settings.WEBHOOK_DISABLE_AFTER_DAYS
    WebhookEndpoint.objects.update(failing_since=timezone.now() - timedelta(days=days - 1))

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    endpoint.refresh_from_db()
    assert not endpoint.disabled and endpoint.disabled_reason == ""


def test_the_first_failure_starts_the_clock_and_a_success_stops_it(
    merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers(500, 200)
    endpoint = _endpoint(merchant, receiver.url)

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None

    _time_passes(DAY)
    _sweep()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_disabled_endpoint_is_not_called(
    api, merchant, receiver, django_capture_on_commit_callbacks
):
    created = _create(api, receiver.url).json()
    api.patch(f"{ENDPOINTS}/{created['id']}", {"disabled": True}, format="json")

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    assert receiver.received == []
    assert Event.objects.count() == 1  # the event is there to poll


# --- Receivers' odd answers -----------------------------------------------------------


def test_a_response_with_a_nul_byte_is_recorded_like_any_other(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    receiver = receivers((200, b"ok\x00"))
    _endpoint(merchant, receiver.url)

    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    delivery = Delivery.objects.get()
    assert (delivery.status, _statuses(delivery)) == ("succeeded", [200])
    _time_passes(settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 31)
    assert _sweep() == 0
    assert len(receiver.received) == 1


# --- manage.py redeliver ------------------------------------------------------------------------
# The command lives in webhooks/management/commands/redeliver.py.


def _redeliver(capture_callbacks, *args) -> str:
    out = io.StringIO()
    with capture_callbacks(execute=True):
        call_command("redeliver", *args, stdout=out)
    return out.getvalue()


def test_redeliver_an_event_sends_it_again(merchant, receiver, django_capture_on_commit_callbacks):
    endpoint = _endpoint(merchant, receiver.url)
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    first, _ = Event.objects.order_by("id")

    out = _redeliver(django_capture_on_commit_callbacks, "--event", first.pk)

    assert "Queued 1 delivery" in out
    assert len(receiver.received) == 3
    assert _verify(endpoint.secret, receiver.received[-1])["id"] == first.pk
    delivery = Delivery.objects.get(event=first)
    # A redelivery is a fresh run of the schedule; the attempt log keeps both sends.
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert delivery.attempt_log.count() == 2


def test_redeliver_failed_for_one_endpoint(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = [10]
    down, other, fine = receivers(500), receivers(500), receivers(200)
    down_endpoint = _endpoint(merchant, down.url)
    _endpoint(merchant, other.url)
    _endpoint(merchant, fine.url)
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    _time_passes(DAY)
    _sweep()  # the last retry fails too: given up
    assert Delivery.objects.filter(status="failed").count() == 2
    down.answer(200)

    out = _redeliver(django_capture_on_commit_callbacks, "--failed", "--endpoint", down_endpoint.pk)

    assert "Queued 1 delivery" in out
    assert (len(down.received), len(other.received), len(fine.received)) == (3, 2, 1)
    assert Delivery.objects.get(endpoint=down_endpoint).status == "succeeded"


def test_redeliver_failed_skips_what_succeeded(
    merchant, receivers, django_capture_on_commit_callbacks
):
    down, fine = receivers(500, 200), receivers(200)
    _endpoint(merchant, down.url)
    _endpoint(merchant, fine.url)
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")

    out = _redeliver(django_capture_on_commit_callbacks, "--failed")

    assert "Queued 1 delivery" in out
    assert (len(down.received), len(fine.received)) == (2, 1)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}


@pytest.mark.parametrize(
    "since", ["2030-01-02", "2030-01-02T00:00:00Z", "2030-01-02T03:00:00+03:00"]
)
def test_redeliver_since_a_date_or_time(
    merchant, receiver, django_capture_on_commit_callbacks, since
):
    _endpoint(merchant, receiver.url)
    for _ in range(2):
        _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    older, newer = Event.objects.order_by("id")
    Event.objects.filter(pk=older.pk).update(created_at=datetime(2030, 1, 1, 23, 59, tzinfo=UTC))
    Event.objects.filter(pk=newer.pk).update(created_at=datetime(2030, 1, 2, 0, 0, tzinfo=UTC))

    out = _redeliver(django_capture_on_commit_callbacks, "--since", since)

    assert "Queued 1 delivery" in out
    assert receiver.event_ids() == [older.pk, newer.pk, newer.pk]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "Say what to redeliver"),
        (["--event", "evt_nope"], "No such event"),
        (["--endpoint", "we_nope"], "No such webhook endpoint"),
        (["--since", "last tuesday"], "--since"),
    ],
)
def test_redeliver_refuses_unclear_orders(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("redeliver", *args, stdout=io.StringIO())


def test_redelivering_a_given_up_delivery_gets_the_whole_schedule_again(
    settings, merchant, receivers, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_SCHEDULE = [10, 10]
    receiver = receivers(500)
    _endpoint(merchant, receiver.url)
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    for _ in range(2):
        _time_passes(DAY)
        _sweep()
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"

    _redeliver(django_capture_on_commit_callbacks, "--failed")

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)  # one more failure is not the end
    assert delivery.next_attempt_at is not None


def test_enabling_an_endpoint_that_is_already_enabled_does_not_pull_retries_forward(
    settings, merchant, receivers, django_capture_on_commit_callbacks, api
):
    receiver = receivers(500)
    endpoint = _endpoint(merchant, receiver.url)
    _happens(django_capture_on_commit_callbacks, PaymentFactory(merchant=merchant), "succeeded")
    scheduled = Delivery.objects.get().next_attempt_at

    api.patch(f"/api/v1/webhook_endpoints/{endpoint.pk}", {"disabled": False}, format="json")

    assert Delivery.objects.get().next_attempt_at == scheduled
