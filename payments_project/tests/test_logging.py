"""
Log lines: one JSON object each, masked, and grouped by the request id that follows a
payment from the API call into its tasks and the webhooks they cause.
"""

import io
import json
import logging
from types import SimpleNamespace

import pytest

from payments.models import Payment
from payments.tests.factories import APIKeyFactory
from payments.tests.test_sandbox_flow import Buyer, create_payment
from payments_project import celery as celery_module
from payments_project.logging import JsonFormatter, MaskingFormatter, RequestIdFilter, mask
from payments_project.request_id import request_id_get, request_id_reset, request_id_set

CARD = "4242424242424242"
CARD_GROUPED = "4242 4242 4242 4242"
EMAIL = "buyer.name@example.com"


class Lines:
    """What the root logger wrote, as the production handler formats it."""

    def __init__(self, stream: io.StringIO):
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    def with_message(self, fragment: str) -> list[dict]:
        return [record for record in self.records() if fragment in record["message"]]


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield Lines(stream)
    root.removeHandler(handler)
    root.setLevel(previous_level)


# --- Masking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, hidden, kept",
    [
        (f"card {CARD} declined", CARD, "•••• 4242"),
        (f"card {CARD_GROUPED} declined", CARD_GROUPED, "•••• 4242"),
        ("card 4000-0000-0000-0002 declined", "4000-0000-0000-0002", "•••• 0002"),
        (f'{{"number": "{CARD}", "cvc": "123"}}', CARD, "•••• 4242"),
        (f"{CARD_GROUPED} 12/30", CARD_GROUPED, "•••• 4242 12/30"),
        (f"to {EMAIL} now", EMAIL, "b***@example.com"),
        ("/x?email=buyer.name%40example.com", "buyer.name", "b***@example.com"),
        ("/x?card=4242+4242+4242+4242&y=1", "4242+4242", "•••• 4242&y=1"),
        ("/x?card=4242%204242%204242%204242", "4242%20", "•••• 4242"),
        ("call +7 (916) 123-45-67 today", "123-45-67", "[phone]"),
        ("key sk_test_4eC39HqLyjWDarjtT1zdp7dc used", "4eC39HqLyjWDarjtT1zdp7dc", "sk_test_…"),
        ("key sk_live_Abc123XYZ used", "Abc123XYZ", "sk_live_…"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GK", "whsec_…"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi", "[redacted]"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjdXMifQ.c2lnbmF0dXJl", "c2lnbmF0dXJl", "eyJ…"),
    ],
)
def test_mask_hides_what_must_not_be_logged(text, hidden, kept):
    masked = mask(text)
    assert hidden not in masked
    assert kept in masked


@pytest.mark.parametrize(
    "text",
    [
        "payment pay_01JD3K9Q4242424242424242ZZ succeeded",  # digits glued into an id
        "amount 1234567890123 RUB",  # 13 digits, not a card (Luhn fails)
        "order 2026-11-25 #12345",
        "refund re_01JD3K9Q7M succeeded for 599.00 RUB",
    ],
)
def test_mask_leaves_ids_amounts_and_dates_alone(text):
    assert mask(text) == text


def test_a_traceback_with_a_card_number_is_masked(json_lines):
    try:
        raise ValueError(f"provider said: card {CARD} for {EMAIL} is blocked")
    except ValueError:
        logging.getLogger("payments.test").exception("Charging failed")

    assert CARD not in json_lines.text
    assert EMAIL not in json_lines.text
    (record,) = json_lines.with_message("Charging failed")
    assert "•••• 4242" in record["exc"]
    assert record["level"] == "ERROR"


def test_extra_fields_are_masked_too(json_lines):
    logging.getLogger("payments.test").info(
        "Customer updated", extra={"customer": {"email": EMAIL, "phones": ["+44 20 7946 0958"]}}
    )
    (record,) = json_lines.with_message("Customer updated")
    assert record["customer"] == {"email": "b***@example.com", "phones": ["[phone]"]}


def test_the_text_format_is_masked_as_well():
    formatter = MaskingFormatter("%(request_id)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "card %s", (CARD,), None)
    assert formatter.format(record) == "None card •••• 4242"


# --- Request lines -------------------------------------------------------------------------


def test_a_request_with_a_card_number_and_an_email_logs_neither(api, json_lines):
    response = api.post(
        f"/api/v1/payments?card={CARD}&email={EMAIL.replace('@', '%40')}",
        {
            "amount": "599.00",
            "currency": "RUB",
            "customer": {"external_id": "c-1", "email": EMAIL},
            "description": f"card {CARD_GROUPED} for {EMAIL}",
        },
        format="json",
        HTTP_X_REQUEST_ID="req-card-email",
    )

    # Refused (the API never takes card numbers), and logged without it or the email.
    assert response.json()["error"]["code"] == "card_number_refused"
    assert CARD not in json_lines.text and CARD_GROUPED not in json_lines.text
    assert EMAIL not in json_lines.text
    (line,) = [r for r in json_lines.records() if r["logger"] == "payments_project.requests"]
    assert line["request_id"] == "req-card-email"
    assert line["method"] == "POST" and line["status"] == 400
    assert line["path"].startswith("/api/v1/payments?card=•••• 4242&email=b***@example.com")
    assert line["merchant_id"] is None  # refused before the key was even looked at
    assert isinstance(line["duration_ms"], float)


def test_djangos_line_for_a_refused_request_is_masked_and_carries_the_request_id(api, json_lines):
    response = api.post(
        f"/api/v1/payments?email={EMAIL.replace('@', '%40')}&card={CARD_GROUPED.replace(' ', '+')}",
        {"amount": "-1", "currency": "RUB"},
        format="json",
        HTTP_X_REQUEST_ID="req-refused",
    )

    assert response.status_code == 400
    (line,) = [r for r in json_lines.records() if r["logger"] == "django.request"]
    assert line["request_id"] == "req-refused"
    assert "buyer.name" not in json_lines.text and "4242+4242" not in json_lines.text


def test_every_line_is_one_json_object(api, merchant, json_lines):
    api.get(f"/api/v1/customers?email={EMAIL}")
    logging.getLogger("payments.test").warning("two\nlines")

    lines = json_lines.text.splitlines()
    assert len(lines) == len(json_lines.records()) >= 2
    assert json_lines.with_message("two\nlines")[0]["level"] == "WARNING"
    (line,) = [r for r in json_lines.records() if r["logger"] == "payments_project.requests"]
    assert line["merchant_id"] == merchant.pk and line["status"] == 200
    assert EMAIL not in json_lines.text


def test_the_response_names_the_request_id(api):
    given = api.get("/api/v1/payments", HTTP_X_REQUEST_ID="trace-42.a_b")
    made = api.get("/api/v1/payments")
    hostile = api.get("/api/v1/payments", HTTP_X_REQUEST_ID="x\ny" + "z" * 80)

    assert given["X-Request-ID"] == "trace-42.a_b"
    assert len(made["X-Request-ID"]) == 32
    assert (
        hostile["X-Request-ID"] not in ("x\ny" + "z" * 80,) and len(hostile["X-Request-ID"]) == 32
    )
    assert request_id_get() is None  # nothing leaks past the request


# --- Into tasks and webhooks ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_request_id_follows_a_payment_into_its_tasks_and_webhook(
    live_server, settings, merchant, json_lines
):
    settings.PUBLIC_BASE_URL = live_server.url
    from conftest import client_for

    api = client_for(APIKeyFactory(merchant=merchant).raw_key)
    api.credentials(
        HTTP_AUTHORIZATION=api._credentials["HTTP_AUTHORIZATION"], HTTP_X_REQUEST_ID="req-create"
    )
    created = create_payment(api, amount="599.00", currency="RUB")
    payment_id = created["id"]

    buyer = Buyer()
    buyer.session.headers["X-Request-ID"] = "req-pay"
    buyer.pay(created["checkout_url"], "4242 4242 4242 4242")

    assert Payment.objects.get(pk=payment_id).status == "succeeded"
    by_request = {}
    for record in json_lines.records():
        if record.get("payment_id") == payment_id or record.get("webhook_id"):
            by_request.setdefault(record["request_id"], []).append(record["message"])
    # Created, and handed to the sandbox by the (eager) dispatch task, under the API call's id.
    assert any(": created" in m for m in by_request["req-create"])
    # The buyer's payment, the sandbox's webhook it caused (sent by a task, received over
    # HTTP) and the payment's success, all under the buyer's request id.
    assert any("Webhook sandbox" in m and "stored" in m for m in by_request["req-pay"])
    assert any("succeeded" in m and payment_id in m for m in by_request["req-pay"])
    assert CARD not in json_lines.text and CARD_GROUPED not in json_lines.text


def test_a_queued_task_carries_the_request_id_to_the_worker():
    headers = {}
    token = request_id_set("req-queued")
    try:
        celery_module._request_id_to_headers(headers=headers)
    finally:
        request_id_reset(token)
    assert headers == {celery_module.REQUEST_ID_HEADER: "req-queued"}

    # In the worker: the message's header becomes the task's request id, and is dropped
    # when the task ends.
    task = SimpleNamespace(
        request=SimpleNamespace(is_eager=False, headers=headers, x_request_id=None)
    )
    celery_module._request_id_enter(task_id="t1", task=task)
    assert request_id_get() == "req-queued"
    celery_module._request_id_leave(task_id="t1")
    assert request_id_get() is None


def test_a_task_without_one_gets_its_own_request_id():
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False, headers={}, x_request_id=None))
    celery_module._request_id_enter(task_id="t2", task=task)
    try:
        assert len(request_id_get()) == 32
    finally:
        celery_module._request_id_leave(task_id="t2")
    assert request_id_get() is None
