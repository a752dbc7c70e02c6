"""
Refunds end to end through our API for the real provider adapters, against the local fakes:
POST /api/v1/payments/{id}/refunds -> a pending refund -> the refund task (eager, on commit)
calls the adapter -> the fake provider -> the answer settles it, or the provider's webhook
(Stripe: signed events; YooKassa: allowlisted notifications that are re-fetched) does.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments import services
from payments.models import Payment, PaymentEvent, Refund
from payments.tasks import refunds_sweep_awaiting_provider
from payments.tests import test_provider_stripe as stripe_tests
from payments.tests import test_provider_yookassa as yookassa_tests
from payments.tests.fakes.stripe_server import error_body
from webhooks.models import Event, InboundWebhook

pytestmark = pytest.mark.django_db

# The providers' own test modules' fixtures and helpers, reused (not imported by name, so
# that test parameters named after the fixtures do not read as redefinitions).
fake_stripe = stripe_tests.fake_stripe
_quick_sdk_backoff = stripe_tests._quick_sdk_backoff  # autouse: the SDK's retries are quick
create_stripe_payment = stripe_tests.create_stripe_payment
stripe_deliver = stripe_tests.deliver
fake = yookassa_tests.fake
yookassa = yookassa_tests.yookassa
YOOKASSA_IP = yookassa_tests.YOOKASSA_IP
notification = yookassa_tests.notification
yookassa_deliver = yookassa_tests.deliver


def refund(api, capture_callbacks, payment_id, **body):
    """POST a refund and run the dispatch task its commit enqueues."""
    with capture_callbacks(execute=True):
        response = api.post(f"/api/v1/payments/{payment_id}/refunds", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"  # rendered before the task ran
    return Refund.objects.get(pk=response.json()["id"])


def succeeded_events(refund_obj: Refund) -> int:
    return Event.objects.filter(type="refund.succeeded", object_id=refund_obj.pk).count()


# --- Stripe ---------------------------------------------------------------------------------


def paid_on_stripe(api, client, fake_stripe, capture_callbacks) -> Payment:
    """A Stripe payment made through our API, paid on Checkout and settled by the webhook."""
    payment = create_stripe_payment(api, capture_callbacks)
    fake_stripe.complete_session(payment.provider_checkout_id)
    event = fake_stripe.event("checkout.session.completed", payment.provider_checkout_id)
    assert stripe_deliver(client, capture_callbacks, event).status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", Decimal("599.00"))
    return payment


def test_stripe_partial_then_full_refund_through_our_api(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_stripe(api, client, fake_stripe, capture)

    first = refund(api, capture, payment.pk, amount="100.00", reason="requested_by_customer")

    (sent,) = fake_stripe.requests_to("POST", "/v1/refunds")
    assert sent.header("Idempotency-Key") == f"refund-{first.pk}"
    assert sent.form["payment_intent"] == payment.provider_payment_id
    assert sent.form["amount"] == "10000"
    assert sent.form["metadata"] == {"refund_id": first.pk}
    assert sent.form["reason"] == "requested_by_customer"
    first.refresh_from_db()
    assert first.status == "succeeded"
    assert first.provider_refund_id in fake_stripe.refunds
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("100.00"))
    assert services.payment_refundable(payment) == Decimal("499.00")

    rest = refund(api, capture, payment.pk)  # no amount: everything left

    sent = fake_stripe.requests_to("POST", "/v1/refunds")[-1]
    assert sent.header("Idempotency-Key") == f"refund-{rest.pk}"
    assert sent.form["amount"] == "49900"
    assert sent.form["metadata"] == {"refund_id": rest.pk}
    rest.refresh_from_db()
    assert (rest.status, rest.amount) == ("succeeded", Decimal("499.00"))
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("refunded", Decimal("599.00"))
    assert (succeeded_events(first), succeeded_events(rest)) == (1, 1)
    assert Event.objects.filter(type="refund.succeeded").count() == 2
    body = api.get(f"/api/v1/payments/{payment.pk}").json()
    assert (body["status"], body["amount_refunded"]) == ("refunded", "599.00")
    charge = fake_stripe.charges[fake_stripe.intents[payment.provider_payment_id]["latest_charge"]]
    assert charge["amount_refunded"] == 59900

    # Stripe's own report of the (already settled) refund changes nothing.
    late = fake_stripe.event("refund.updated", rest.provider_refund_id)
    assert stripe_deliver(client, capture, late).status_code == 200
    assert succeeded_events(rest) == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == Decimal("599.00")


def test_stripe_pending_refund_is_settled_by_a_signed_refund_updated(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_stripe(api, client, fake_stripe, capture)
    fake_stripe.refund_status = "pending"

    pending = refund(api, capture, payment.pk, amount="100.00")

    pending.refresh_from_db()
    assert pending.status == "pending"
    assert pending.provider_refund_id in fake_stripe.refunds  # kept from Stripe's answer
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", Decimal(0))
    assert services.payment_refundable(payment) == Decimal("499.00")  # still held
    assert succeeded_events(pending) == 0

    fake_stripe.refunds[pending.provider_refund_id]["status"] = "succeeded"
    event = fake_stripe.event("refund.updated", pending.provider_refund_id)
    response = stripe_deliver(client, capture, event)

    assert response.status_code == 200, response.content
    pending.refresh_from_db()
    assert pending.status == "succeeded"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("100.00"))
    assert succeeded_events(pending) == 1
    webhook = InboundWebhook.objects.get(provider="stripe", event_id=event["id"])
    assert webhook.status == "processed"

    # Stripe redelivers the same event: received as a duplicate, applied once.
    again = stripe_deliver(client, capture, event)
    assert again.json() == {"received": True, "duplicate": True}
    assert succeeded_events(pending) == 1
    refunded_events = PaymentEvent.objects.filter(payment=payment, type="partially_refunded")
    assert refunded_events.count() == 1


def test_stripe_pending_refund_that_fails_is_refundable_again(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_stripe(api, client, fake_stripe, capture)
    fake_stripe.refund_status = "pending"
    pending = refund(api, capture, payment.pk, amount="599.00")
    pending.refresh_from_db()
    assert services.payment_refundable(payment) == Decimal(0)

    fake_stripe.fail_refund(pending.provider_refund_id, "expired_or_canceled_card")
    event = fake_stripe.event("refund.failed", pending.provider_refund_id)
    assert stripe_deliver(client, capture, event).status_code == 200

    pending.refresh_from_db()
    assert (pending.status, pending.failure_reason) == ("failed", "expired_or_canceled_card")
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", Decimal(0))
    assert services.payment_refundable(payment) == Decimal("599.00")
    assert Event.objects.filter(type="refund.failed", object_id=pending.pk).count() == 1
    assert succeeded_events(pending) == 0


def test_stripe_refusing_a_refund_fails_it_and_its_amount_is_refundable_again(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_stripe(api, client, fake_stripe, capture)
    fake_stripe.respond_next(
        400,
        error_body(
            "invalid_request_error",
            "Charge has been disputed; it cannot be refunded.",
            code="charge_disputed",
        ),
        path="/v1/refunds",
    )

    refused = refund(api, capture, payment.pk, amount="200.00")

    assert len(fake_stripe.requests_to("POST", "/v1/refunds")) == 1  # a 4xx is not retried
    refused.refresh_from_db()
    assert refused.status == "failed"
    assert refused.failure_reason == "Charge has been disputed; it cannot be refunded."
    assert refused.provider_refund_id == ""
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", Decimal(0))
    assert services.payment_refundable(payment) == Decimal("599.00")
    assert Event.objects.filter(type="refund.failed", object_id=refused.pk).count() == 1
    assert fake_stripe.refunds == {}

    # The whole amount can be refunded again, and this time Stripe takes it.
    again = refund(api, capture, payment.pk, amount="599.00")

    again.refresh_from_db()
    assert again.status == "succeeded"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("refunded", Decimal("599.00"))


def test_a_stripe_outage_leaves_the_refund_pending_until_the_sweep_redispatches_it(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_stripe(api, client, fake_stripe, capture)
    fake_stripe.respond_next(500, times=3, path="/v1/refunds")  # the SDK's try and 2 retries

    stuck = refund(api, capture, payment.pk, amount="100.00")

    tries = fake_stripe.requests_to("POST", "/v1/refunds")
    assert len(tries) == 3
    assert {r.header("Idempotency-Key") for r in tries} == {f"refund-{stuck.pk}"}
    stuck.refresh_from_db()
    assert (stuck.status, stuck.provider_refund_id, stuck.dispatch_attempts) == ("pending", "", 1)
    assert services.payment_refundable(payment) == Decimal("499.00")

    # Too recent for the sweep: it leaves the refund alone.
    assert refunds_sweep_awaiting_provider() == 0
    assert len(fake_stripe.requests_to("POST", "/v1/refunds")) == 3

    old = timezone.now() - timedelta(minutes=3)
    Refund.objects.filter(pk=stuck.pk).update(created_at=old, last_dispatched_at=old)

    assert refunds_sweep_awaiting_provider() == 1

    retried = fake_stripe.requests_to("POST", "/v1/refunds")[-1]
    assert retried.header("Idempotency-Key") == f"refund-{stuck.pk}"
    stuck.refresh_from_db()
    assert (stuck.status, stuck.dispatch_attempts) == ("succeeded", 2)
    assert stuck.provider_refund_id in fake_stripe.refunds
    assert len(fake_stripe.refunds) == 1
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("100.00"))
    assert succeeded_events(stuck) == 1
    assert refunds_sweep_awaiting_provider() == 0  # settled: nothing left to sweep


# --- YooKassa -------------------------------------------------------------------------------


def paid_on_yookassa(api, client, fake, capture_callbacks) -> Payment:
    """A YooKassa payment made through our API, paid, and settled by its notification."""
    with capture_callbacks(execute=True):
        response = api.post(
            "/api/v1/payments",
            {"amount": "599.00", "currency": "RUB", "provider": "yookassa"},
            format="json",
        )
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(pk=response.json()["id"])
    paid = fake.pay(payment.provider_payment_id)
    response = yookassa_deliver(
        client,
        capture_callbacks,
        notification("payment.succeeded", paid),
        REMOTE_ADDR=YOOKASSA_IP,
    )
    assert response.status_code == 200, response.content
    payment.refresh_from_db()
    assert (payment.status, payment.amount_captured) == ("succeeded", Decimal("599.00"))
    return payment


def answer_refunds_pending(fake):
    """From now on the fake answers new refunds `pending`, as YooKassa may."""
    create = fake._refund_create

    def pending(*, body):
        made = create(body=body)
        made["status"] = "pending"
        return made

    fake._refund_create = pending


def test_yookassa_refund_through_our_api_succeeds_at_once(
    yookassa, fake, api, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_yookassa(api, client, fake, capture)

    first = refund(api, capture, payment.pk, amount="100.00", reason="Item broken")

    (sent,) = fake.requests_to("POST", "/v3/refunds")
    assert sent.header("Idempotence-Key") == f"refund-{first.pk}"
    assert sent.json == {
        "payment_id": payment.provider_payment_id,
        "amount": {"value": "100.00", "currency": "RUB"},
        "description": "Item broken",
    }
    first.refresh_from_db()
    assert first.status == "succeeded"
    assert first.provider_refund_id in fake.refunds
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("100.00"))

    rest = refund(api, capture, payment.pk)

    sent = fake.requests_to("POST", "/v3/refunds")[-1]
    assert sent.header("Idempotence-Key") == f"refund-{rest.pk}"
    assert sent.json["amount"] == {"value": "499.00", "currency": "RUB"}
    rest.refresh_from_db()
    assert rest.status == "succeeded"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("refunded", Decimal("599.00"))
    assert fake.payment(payment.provider_payment_id)["refunded_amount"]["value"] == "599.00"
    assert (succeeded_events(first), succeeded_events(rest)) == (1, 1)


def test_yookassa_pending_refund_is_settled_by_its_notification_once(
    yookassa, fake, api, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_yookassa(api, client, fake, capture)
    answer_refunds_pending(fake)

    pending = refund(api, capture, payment.pk, amount="150.00")

    pending.refresh_from_db()
    assert pending.status == "pending"
    remote_id = pending.provider_refund_id
    assert fake.refunds[remote_id]["status"] == "pending"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", Decimal(0))
    assert services.payment_refundable(payment) == Decimal("449.00")

    fake.refunds[remote_id]["status"] = "succeeded"  # YooKassa completes the refund
    payload = notification("refund.succeeded", {"id": remote_id, "status": "succeeded"})
    first = yookassa_deliver(client, capture, payload, REMOTE_ADDR=YOOKASSA_IP)

    assert first.status_code == 200, first.content
    assert first.json() == {"received": True, "duplicate": False}
    assert fake.requests_to("GET", f"/v3/refunds/{remote_id}")  # the re-fetch
    pending.refresh_from_db()
    assert pending.status == "succeeded"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("150.00"))
    webhook = InboundWebhook.objects.get(provider="yookassa", event_type="refund.succeeded")
    assert (webhook.status, webhook.event_id) == ("processed", f"refund.succeeded:{remote_id}")

    again = yookassa_deliver(client, capture, payload, REMOTE_ADDR=YOOKASSA_IP)

    assert again.json() == {"received": True, "duplicate": True}
    assert InboundWebhook.objects.filter(event_type="refund.succeeded").count() == 1
    assert succeeded_events(pending) == 1
    payment.refresh_from_db()
    assert payment.amount_refunded == Decimal("150.00")


def test_a_yookassa_refund_notification_from_outside_the_allowlist_changes_nothing(
    yookassa, fake, api, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_yookassa(api, client, fake, capture)
    answer_refunds_pending(fake)
    pending = refund(api, capture, payment.pk, amount="150.00")
    pending.refresh_from_db()
    remote_id = pending.provider_refund_id
    fake.refunds[remote_id]["status"] = "succeeded"
    gets_before = len(fake.requests_to("GET", f"/v3/refunds/{remote_id}"))

    response = yookassa_deliver(
        client,
        capture,
        notification("refund.succeeded", {"id": remote_id, "status": "succeeded"}),
        REMOTE_ADDR="203.0.113.5",
    )

    assert response.status_code == 400
    webhook = InboundWebhook.objects.get(provider="yookassa", source_ip="203.0.113.5")
    assert webhook.status == "rejected"
    assert len(fake.requests_to("GET", f"/v3/refunds/{remote_id}")) == gets_before
    pending.refresh_from_db()
    assert pending.status == "pending"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", Decimal(0))
    assert succeeded_events(pending) == 0


def test_yookassa_refusing_a_refund_fails_it_and_its_amount_is_refundable_again(
    yookassa, fake, api, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_yookassa(api, client, fake, capture)
    fake.queue_error(400, description="Refund is not possible now.", parameter="payment_id")

    refused = refund(api, capture, payment.pk, amount="599.00")

    assert len(fake.requests_to("POST", "/v3/refunds")) == 1
    refused.refresh_from_db()
    assert refused.status == "failed"
    assert "Refund is not possible now." in refused.failure_reason
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("succeeded", Decimal(0))
    assert services.payment_refundable(payment) == Decimal("599.00")
    assert Event.objects.filter(type="refund.failed", object_id=refused.pk).count() == 1

    again = refund(api, capture, payment.pk, amount="599.00")

    again.refresh_from_db()
    assert again.status == "succeeded"
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("refunded", Decimal("599.00"))


def test_a_yookassa_outage_leaves_the_refund_pending_until_the_sweep_redispatches_it(
    yookassa, fake, api, client, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    payment = paid_on_yookassa(api, client, fake, capture)
    fake.queue_error(500)

    stuck = refund(api, capture, payment.pk, amount="100.00")

    stuck.refresh_from_db()
    assert (stuck.status, stuck.provider_refund_id) == ("pending", "")
    assert fake.refunds == {}
    old = timezone.now() - timedelta(minutes=3)
    Refund.objects.filter(pk=stuck.pk).update(created_at=old, last_dispatched_at=old)

    assert refunds_sweep_awaiting_provider() == 1

    keys = [r.header("Idempotence-Key") for r in fake.requests_to("POST", "/v3/refunds")]
    assert keys == [f"refund-{stuck.pk}"] * 2
    stuck.refresh_from_db()
    assert stuck.status == "succeeded"
    assert stuck.provider_refund_id in fake.refunds
    payment.refresh_from_db()
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", Decimal("100.00"))
    assert succeeded_events(stuck) == 1


def test_stripe_refund_that_fails_after_succeeding_is_flagged_not_hidden(
    api, client, fake_stripe, django_capture_on_commit_callbacks
):
    """
    Stripe may report a succeeded refund failed later (the money came back). Our records
    never go back quietly: the webhook stays failed with a clear error for staff.
    """
    capture = django_capture_on_commit_callbacks
    payment = paid_on_stripe(api, client, fake_stripe, capture)
    done = refund(api, capture, payment.pk, amount="100.00")
    done.refresh_from_db()
    assert done.status == "succeeded"

    fake_stripe.fail_refund(done.provider_refund_id)
    event = fake_stripe.event("refund.failed", done.provider_refund_id)
    assert stripe_deliver(client, capture, event).status_code == 200

    webhook = InboundWebhook.objects.get(event_type="refund.failed")
    assert webhook.status == "failed"
    assert "no longer matches our books" in webhook.error
    done.refresh_from_db()
    payment.refresh_from_db()
    assert done.status == "succeeded"
    assert payment.amount_refunded == Decimal("100.00")
