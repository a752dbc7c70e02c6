"""
Schemathesis against our own OpenAPI schema (`/api/schema/`), in process over WSGI.

Every operation is called with generated input, valid and invalid: with a secret key, and
more briefly with a publishable key and a customer session token. Objects are seeded for
it, and path parameters and body references hit them as well as made-up ids. Every answer
must be no 5xx, a documented status code and content type, and match the documented body
and headers. Bounded and derandomized: the same cases every run.

The calls run inside the test's transaction, which pytest-django rolls back, so nothing
the fuzzing creates reaches another test (and no task enqueued on commit ever runs).
"""

from decimal import Decimal

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing.tests.flows import captured, credit_change, refunded
from payments import customer_tokens, services
from payments.models import PaymentStatus
from payments.tests.factories import APIKeyFactory, CustomerFactory, MerchantFactory
from payments_project.wsgi import application
from subscriptions import services as subscription_services
from subscriptions.tests.flows import plan_create
from webhooks import callbacks

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
FUZZ_SETTINGS = {
    "derandomize": True,
    "deadline": None,
    # The seeded objects are meant to be shared by every case of one operation.
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


def in_test_transaction(environ, start_response):
    """
    The real WSGI application, except that it leaves the database connection open, as
    Django's test client does: closing it at the end of a request would end the test's
    transaction (and its rollback) with it.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def schema_load(**config):
    # At import, not from a fixture: schemathesis' lazy `from_fixture` schemas do not work
    # with pytest 9 (they set `Node._nodeid`, which pytest no longer has).
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        in_test_transaction,
        config=schemathesis.Config.from_dict({"seed": 20260101, **config}),
    )


# Valid and invalid input, every phase: examples, coverage (boundaries, missing and wrong
# parameters, no credential) and fuzzing.
schema = schema_load(generation={"mode": "all", "deterministic": True})
# Publishable keys and customer sessions are refused before most input is even read: valid
# input and the fuzzing phase say what there is to say about them.
limited_schema = schema_load(
    generation={"mode": "positive", "deterministic": True},
    phases={"coverage": {"enabled": False}},
)

# Filled by the `seeded` fixture for one test: path parameter -> ids of seeded objects,
# and body field -> values that make a request get past "no such object".
SEEDED_IDS: dict[str, list[str]] = {}
SEEDED_REFERENCES: dict[str, list[str]] = {}


def flatmap_path_parameters(context, path_parameters):
    # Made-up ids exercise the 404s; the seeded objects exercise everything behind them.
    if not path_parameters:
        return st.just(path_parameters)
    variants = [path_parameters]
    for name in path_parameters:
        variants += [{**path_parameters, name: pk} for pk in SEEDED_IDS.get(name, [])]
    return st.sampled_from(variants)


def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    references = {name: SEEDED_REFERENCES[name] for name in body if name in SEEDED_REFERENCES}
    if not references:
        return st.just(body)
    # One reference at a time, and all of them at once (a subscription needs both a real
    # plan and a real customer to get anywhere).
    variants = [body, {**body, **{name: values[0] for name, values in references.items()}}]
    for name, values in references.items():
        variants += [{**body, name: value} for value in values]
    return st.sampled_from(variants)


for _schema in (schema, limited_schema):
    _schema.hook(flatmap_path_parameters)
    _schema.hook(flatmap_body)


@pytest.fixture
def seeded(db, settings):
    """A merchant with one of everything the API reads (returned: it, and its customer)."""
    # Fuzzed webhook URLs must not send this test to DNS; the SSRF guard that would look
    # their hosts up has tests of its own (webhooks/tests/test_callbacks.py).
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    merchant = MerchantFactory()
    endpoint = callbacks.endpoint_create(
        merchant=merchant, url="http://127.0.0.1:9/hooks", enabled_events=["*"]
    )
    customer = CustomerFactory(merchant=merchant)
    credit_change(customer, "grant", "1000.00")
    pending = services.payment_create(
        merchant=merchant, amount=Decimal("100.00"), currency="RUB", provider="sandbox",
        customer=customer,
    )  # fmt: skip
    authorized = services.payment_create(
        merchant=merchant, amount=Decimal("200.00"), currency="RUB", provider="sandbox",
        capture=False,
    )  # fmt: skip
    with transaction.atomic():
        authorized = services.payment_transition(
            payment=services.payment_lock(authorized.pk),
            to_status=PaymentStatus.REQUIRES_CAPTURE,
            source="provider",
        )
    paid = captured(merchant, "599.00", customer=customer)
    refund = refunded(paid, "100.00")
    plan = plan_create(merchant, "fuzz", "299.00")
    subscription = subscription_services.subscription_create(
        merchant=merchant, livemode=False, customer=customer, plan=plan
    )
    SEEDED_IDS.update(
        customer_id=[customer.pk],
        payment_id=[pending.pk, authorized.pk, paid.pk],
        refund_id=[refund.pk],
        invoice_id=list(merchant.invoices.values_list("pk", flat=True)),
        subscription_id=[subscription.pk],
        event_id=list(merchant.events.values_list("pk", flat=True)[:2]),
        endpoint_id=[endpoint.pk],
    )
    SEEDED_REFERENCES.update(
        customer=[customer.pk], plan=[plan.pk, plan.code], provider=["sandbox", "credits"]
    )
    yield merchant, customer
    SEEDED_IDS.clear()
    SEEDED_REFERENCES.clear()


@pytest.fixture
def secret_credential(seeded):
    merchant, _ = seeded
    return APIKeyFactory(merchant=merchant, kind="secret").raw_key


@pytest.fixture(params=["publishable", "customer_session"])
def limited_credential(request, seeded):
    """The credentials that may do less: mostly 403s, and reads narrowed to one customer."""
    merchant, customer = seeded
    if request.param == "publishable":
        return APIKeyFactory(merchant=merchant, kind="publishable").raw_key
    token, _ = customer_tokens.customer_token_mint(customer=customer, livemode=False)
    return token


@schema.parametrize()
@settings(max_examples=25, **FUZZ_SETTINGS)
def test_api_conforms_to_its_schema(case, secret_credential):
    case.call_and_validate(headers={"Authorization": f"Bearer {secret_credential}"}, checks=CHECKS)


# Fewer cases: most operations answer these credentials with a 403 whatever the input.
@limited_schema.parametrize()
@settings(max_examples=5, **FUZZ_SETTINGS)
def test_api_conforms_to_its_schema_with_limited_credentials(case, limited_credential):
    case.call_and_validate(headers={"Authorization": f"Bearer {limited_credential}"}, checks=CHECKS)
