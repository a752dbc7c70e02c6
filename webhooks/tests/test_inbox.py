"""The inbound webhook inbox, driven through `/webhooks/<provider>` with signed sandbox events."""

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from payments import services as payment_services
from payments import signing
from payments.models import Payment, PaymentEvent, SandboxPayment, SandboxPaymentMethod
from payments.sandbox import gateway
from payments.tests.test_authentication import assert_error
from webhooks.models import InboundWebhook
from webhooks.services import REJECTED_BODY_LIMIT
from webhooks.tasks import inbound_webhooks_sweep

pytestmark = pytest.mark.django_db

URL = "/webhooks/sandbox"


# --- Helpers ------------------------------------------------------------------------------


def _payment_with_checkout(merchant, *, capture: bool = True) -> Payment:
    """A pending payment whose sandbox checkout is open, as after the dispatch task ran."""
    payment = payment_services.payment_create(
        merchant=merchant, amount="599.00", currency="RUB", capture=capture
    )
    payment = payment_services.payment_checkout_start(payment_id=payment.pk)
    assert payment.provider_payment_id
    return payment


def _sandbox_moves(payment: Payment, status: str) -> SandboxPayment:
    """What the buyer did on the sandbox page, written straight into the sandbox's books."""
    sandbox_payment = SandboxPayment.objects.get(pk=payment.provider_payment_id)
    sandbox_payment.status = status
    if sandbox_payment.payment_method is None:
        sandbox_payment.payment_method = SandboxPaymentMethod.objects.create(
            card_brand="visa", card_last4="4242"
        )
    if status == SandboxPayment.Status.SUCCEEDED:
        sandbox_payment.amount_captured = sandbox_payment.amount
    if status == SandboxPayment.Status.FAILED:
        sandbox_payment.failure_code = "card_declined"
        sandbox_payment.failure_message = "Your card was declined."
    sandbox_payment.save()
    return sandbox_payment


def _event(sandbox_payment: SandboxPayment, event_type: str, *, created: int | None = None):
    return {
        "id": f"sbx_evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created": created or int(time.time()),
        "data": {"object": gateway.payment_object(sandbox_payment)},
    }


def _signed(event: dict):
    body = json.dumps(event, separators=(",", ":"))
    headers = signing.webhook_headers(gateway.webhook_secret(), event["id"], body)
    return body, headers


def _post(client, body: str, headers: dict):
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def _deliver(client, capture_callbacks, event: dict):
    """Post a correctly signed event and run what the receive path enqueued on commit."""
    body, headers = _signed(event)
    with capture_callbacks(execute=True):
        response = _post(client, body, headers)
    assert response.status_code == 200, response.content
    return response


def _timeline(payment: Payment) -> list[str]:
    return list(PaymentEvent.objects.filter(payment=payment).values_list("type", flat=True))


# --- The happy path and duplicates --------------------------------------------------------


def test_signed_payment_succeeded_event_makes_the_payment_succeed(
    client, merchant, django_capture_on_commit_callbacks
):
    payment = _payment_with_checkout(merchant)
    event = _event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")

    response = _deliver(client, django_capture_on_commit_callbacks, event)

    assert response.json() == {"received": True, "duplicate": False}
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_captured == Decimal("599.00")
    assert payment.completed_at is not None
    assert (payment.card_brand, payment.card_last4) == ("visa", "4242")
    webhook = InboundWebhook.objects.get(provider="sandbox", event_id=event["id"])
    assert webhook.status == InboundWebhook.Status.PROCESSED
    assert webhook.event_type == "payment.succeeded"
    assert webhook.processed_at is not None
    assert webhook.attempts == 1
    assert webhook.error == ""
    assert webhook.payload == event
    assert webhook.headers["webhook-id"] == event["id"]
    assert webhook.headers["content-type"] == "application/json"
    succeeded = PaymentEvent.objects.get(payment=payment, type="succeeded")
    assert succeeded.source == PaymentEvent.Source.PROVIDER
    assert succeeded.actor == f"sandbox:{event['id']}"
    assert (succeeded.from_status, succeeded.to_status) == ("pending", "succeeded")


def test_the_same_event_twice_is_acknowledged_and_applied_once(
    client, merchant, django_capture_on_commit_callbacks
):
    payment = _payment_with_checkout(merchant)
    event = _event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")
    _deliver(client, django_capture_on_commit_callbacks, event)

    # A provider's retry carries the same event id under a fresh signature.
    again = _deliver(client, django_capture_on_commit_callbacks, event)

    assert again.json() == {"received": True, "duplicate": True}
    assert InboundWebhook.objects.filter(event_id=event["id"]).count() == 1
    assert PaymentEvent.objects.filter(payment=payment, type="succeeded").count() == 1
    payment.refresh_from_db()
    assert payment.status == "succeeded"


# --- Requests that are not provably from the sandbox -------------------------------------


def _forged(body: str, headers: dict) -> tuple[str, dict]:
    return body, signing.webhook_headers(signing.webhook_secret_generate(), "sbx_evt_x", body)


def _without_headers(body: str, headers: dict) -> tuple[str, dict]:
    return body, {}


def _stale(body: str, headers: dict) -> tuple[str, dict]:
    six_minutes_ago = datetime.now(UTC) - timedelta(minutes=6)
    event_id = headers["webhook-id"]
    return body, signing.webhook_headers(
        gateway.webhook_secret(), event_id, body, at=six_minutes_ago
    )


def _from_the_future(body: str, headers: dict) -> tuple[str, dict]:
    in_six_minutes = datetime.now(UTC) + timedelta(minutes=6)
    event_id = headers["webhook-id"]
    return body, signing.webhook_headers(
        gateway.webhook_secret(), event_id, body, at=in_six_minutes
    )


def _tampered(body: str, headers: dict) -> tuple[str, dict]:
    event = json.loads(body)
    event["data"]["object"]["amount_captured"] = "1.0000"
    return json.dumps(event, separators=(",", ":")), headers


@pytest.mark.parametrize(
    "spoil",
    [_forged, _without_headers, _stale, _from_the_future, _tampered],
    ids=[
        "forged-signature",
        "missing-headers",
        "stale-timestamp",
        "future-timestamp",
        "body-changed-after-signing",
    ],
)
def test_unverifiable_request_is_400_stored_as_rejected_and_changes_nothing(
    client, merchant, django_capture_on_commit_callbacks, spoil
):
    payment = _payment_with_checkout(merchant)
    timeline_before = _timeline(payment)
    body, headers = spoil(
        *_signed(_event(_sandbox_moves(payment, "succeeded"), "payment.succeeded"))
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(client, body, headers)

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert "signature" in error["message"].lower()
    assert callbacks == []  # nothing was queued for processing
    webhook = InboundWebhook.objects.get()
    assert webhook.status == InboundWebhook.Status.REJECTED
    assert webhook.event_id is None
    assert webhook.payload is None
    assert webhook.body == body  # kept for a forensic look
    assert webhook.error
    payment.refresh_from_db()
    assert payment.status == "pending"
    assert payment.card_last4 == ""
    assert _timeline(payment) == timeline_before


def test_rejected_body_is_kept_only_up_to_the_limit(client):
    body = json.dumps({"id": "sbx_evt_big", "padding": "x" * 100_000})

    response = _post(client, *_forged(body, {}))

    assert response.status_code == 400
    assert len(InboundWebhook.objects.get().body) == REJECTED_BODY_LIMIT == 4 * 1024


def test_signed_but_malformed_event_is_400_and_stored_as_rejected(client):
    body, headers = _signed({"id": "sbx_evt_malformed", "type": "payment.succeeded"})

    response = _post(client, body, headers)

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert "malformed" in error["message"].lower()
    webhook = InboundWebhook.objects.get()
    assert webhook.status == InboundWebhook.Status.REJECTED
    assert webhook.body == body


@pytest.mark.parametrize(
    "field, value", [("payment_method", "pm_123"), (None, ["not", "an", "object"])]
)
def test_signed_event_with_a_non_object_where_an_object_belongs_is_rejected_not_500(
    client, merchant, field, value
):
    payment = _payment_with_checkout(merchant)
    event = _event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")
    if field is None:
        event["data"]["object"] = value
    else:
        event["data"]["object"][field] = value
    client.raise_request_exception = False

    response = _post(client, *_signed(event))

    assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert InboundWebhook.objects.get().status == InboundWebhook.Status.REJECTED
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_a_rejected_request_does_not_block_the_genuine_event_with_the_same_id(
    client, merchant, django_capture_on_commit_callbacks
):
    payment = _payment_with_checkout(merchant)
    event = _event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")
    body, _ = _signed(event)
    _post(client, *_forged(body, {}))

    response = _deliver(client, django_capture_on_commit_callbacks, event)

    assert response.json() == {"received": True, "duplicate": False}
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    statuses = sorted(InboundWebhook.objects.values_list("status", flat=True))
    assert statuses == ["processed", "rejected"]


# --- Out-of-order events ------------------------------------------------------------------


def test_late_requires_capture_after_succeeded_leaves_the_payment_succeeded(
    client, merchant, django_capture_on_commit_callbacks
):
    payment = _payment_with_checkout(merchant, capture=False)
    created = int(time.time())
    authorized = _event(
        _sandbox_moves(payment, "requires_capture"), "payment.requires_capture", created=created
    )
    captured = _event(
        _sandbox_moves(payment, "succeeded"), "payment.succeeded", created=created + 1
    )

    _deliver(client, django_capture_on_commit_callbacks, captured)
    _deliver(client, django_capture_on_commit_callbacks, authorized)

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.amount_captured == Decimal("599.00")
    assert _timeline(payment)[-2:] == ["succeeded", "provider_update_ignored"]
    ignored = PaymentEvent.objects.get(payment=payment, type="provider_update_ignored")
    assert ignored.data == {"provider_status": "requires_capture", "status": "succeeded"}
    assert ignored.actor == f"sandbox:{authorized['id']}"
    assert set(InboundWebhook.objects.values_list("status", flat=True)) == {"processed"}


def test_failed_event_after_succeeded_does_not_unpay_the_payment(
    client, merchant, django_capture_on_commit_callbacks
):
    payment = _payment_with_checkout(merchant)
    succeeded = _event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")
    failed = _event(_sandbox_moves(payment, "failed"), "payment.failed")
    _deliver(client, django_capture_on_commit_callbacks, succeeded)

    _deliver(client, django_capture_on_commit_callbacks, failed)

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.failure_code == ""
    assert "failed" not in _timeline(payment)
    assert _timeline(payment)[-1] == "provider_update_ignored"


# --- Routing ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["nope", "stripe"])  # stripe: no keys in the tests
def test_unknown_or_disabled_provider_is_404_in_the_error_shape(client, provider):
    response = client.post(f"/webhooks/{provider}", data="{}", content_type="application/json")

    assert_error(response, 404, "resource_missing", "invalid_request_error")
    assert not InboundWebhook.objects.exists()


def test_get_is_405_in_the_error_shape(client):
    response = client.get(URL)

    assert_error(response, 405, "method_not_allowed", "invalid_request_error")
    assert response["Allow"] == "POST"
    assert not InboundWebhook.objects.exists()


# --- Events that are not about us, and failures -------------------------------------------


def test_event_about_a_payment_that_is_not_ours_is_ignored(
    client, merchant, django_capture_on_commit_callbacks
):
    ours = _payment_with_checkout(merchant)
    stranger = gateway.payment_open(
        idempotency_key="elsewhere",
        reference="pay_doesnotexist",
        amount=Decimal("10.00"),
        currency="RUB",
        manual_capture=False,
        return_url="https://example.com/",
    )
    stranger.status = SandboxPayment.Status.SUCCEEDED
    stranger.save()
    event = _event(stranger, "payment.succeeded")

    response = _deliver(client, django_capture_on_commit_callbacks, event)

    assert response.json() == {"received": True, "duplicate": False}
    webhook = InboundWebhook.objects.get(event_id=event["id"])
    assert webhook.status == InboundWebhook.Status.IGNORED
    assert webhook.processed_at is not None
    ours.refresh_from_db()
    assert ours.status == "pending"


def test_processing_failure_is_kept_with_its_error_and_reprocessed_on_demand(
    client, merchant, django_capture_on_commit_callbacks, monkeypatch
):
    payment = _payment_with_checkout(merchant)
    event = _event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")

    def broken(**kwargs):
        raise RuntimeError("ledger unavailable")

    monkeypatch.setattr(payment_services, "payment_sync_from_provider", broken)
    response = _deliver(client, django_capture_on_commit_callbacks, event)

    # Still 200: the request was stored; processing is our problem, not the provider's.
    assert response.json() == {"received": True, "duplicate": False}
    webhook = InboundWebhook.objects.get(event_id=event["id"])
    assert webhook.status == InboundWebhook.Status.FAILED
    assert webhook.error == "RuntimeError: ledger unavailable"
    assert "Traceback" in webhook.traceback
    assert "ledger unavailable" in webhook.traceback
    assert webhook.attempts == 1
    payment.refresh_from_db()
    assert payment.status == "pending"

    monkeypatch.undo()
    out = io.StringIO()
    call_command("reprocess_webhooks", "--failed", stdout=out)

    assert "1 processed" in out.getvalue()
    webhook.refresh_from_db()
    assert webhook.status == InboundWebhook.Status.PROCESSED
    assert (webhook.error, webhook.traceback) == ("", "")
    assert webhook.attempts == 2
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert PaymentEvent.objects.filter(payment=payment, type="succeeded").count() == 1


def test_reprocess_webhooks_needs_to_be_told_which():
    with pytest.raises(CommandError, match="--failed"):
        call_command("reprocess_webhooks", stdout=io.StringIO())


def test_reprocess_webhooks_refuses_an_unknown_id():
    with pytest.raises(CommandError, match="whin_nope"):
        call_command("reprocess_webhooks", "--id", "whin_nope", stdout=io.StringIO())


# --- The sweep ----------------------------------------------------------------------------


def test_sweep_processes_a_webhook_whose_task_was_lost(
    client, merchant, django_capture_on_commit_callbacks
):
    stranded_payment = _payment_with_checkout(merchant)
    fresh_payment = _payment_with_checkout(merchant)
    stranded = _event(_sandbox_moves(stranded_payment, "succeeded"), "payment.succeeded")
    fresh = _event(_sandbox_moves(fresh_payment, "succeeded"), "payment.succeeded")
    # Stored, but the processing task never ran (its on-commit callbacks are dropped).
    with django_capture_on_commit_callbacks(execute=False):
        assert _post(client, *_signed(stranded)).status_code == 200
        assert _post(client, *_signed(fresh)).status_code == 200
    InboundWebhook.objects.filter(event_id=stranded["id"]).update(
        received_at=timezone.now() - timedelta(minutes=3)
    )

    swept = inbound_webhooks_sweep()

    assert swept == 1
    assert InboundWebhook.objects.get(event_id=stranded["id"]).status == "processed"
    stranded_payment.refresh_from_db()
    assert stranded_payment.status == "succeeded"
    # A webhook received moments ago may still have its task in flight: left alone.
    assert InboundWebhook.objects.get(event_id=fresh["id"]).status == "received"
    fresh_payment.refresh_from_db()
    assert fresh_payment.status == "pending"
