import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest
import time_machine
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conftest import client_for
from payments import customer_tokens, idempotency, selectors
from payments.authentication import ApiPrincipal
from payments.models import Payment, Refund
from payments.tests.factories import APIKeyFactory, CustomerFactory, PaymentFactory
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/customer_sessions"
PAYMENTS = "/api/v1/payments"
BASE_DIR = Path(__file__).resolve().parents[2]


def mint(api, customer) -> str:
    response = api.post(URL, {"customer": customer.id}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["token"]


def listed_ids(client, query="") -> list[str]:
    response = client.get(f"{PAYMENTS}?{query}")
    assert response.status_code == 200, response.content
    return [p["id"] for p in response.json()["results"]]


def b64url(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(customer, **overrides) -> dict:
    now = int(timezone.now().timestamp())
    return {
        "iss": customer_tokens.ISSUER,
        "aud": customer_tokens.AUDIENCE,
        "sub": customer.id,
        "mer": customer.merchant_id,
        "live": False,
        "iat": now,
        "exp": now + 600,
        "jti": "t1",
        **overrides,
    }


@pytest.fixture
def ann(merchant):
    return CustomerFactory(merchant=merchant, external_id="ann")


@pytest.fixture
def bob(merchant):
    return CustomerFactory(merchant=merchant, external_id="bob")


@pytest.fixture
def ann_api(api, ann):
    """A client acting as customer `ann` through a session minted by a test secret key."""
    return client_for(mint(api, ann))


# --- Minting ---------------------------------------------------------------------------


def test_a_secret_key_mints_a_session_for_its_customer(api, ann):
    before = timezone.now()

    response = api.post(URL, {"customer": ann.id}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"object", "customer", "token", "expires_at", "livemode"}
    assert body["object"] == "customer_session"
    assert body["customer"] == ann.id
    assert body["livemode"] is False
    assert body["token"].startswith("eyJ") and body["token"].count(".") == 2
    assert body["expires_at"].endswith("Z")
    expires_at = parse_datetime(body["expires_at"])
    assert timedelta(seconds=3590) < expires_at - before <= timedelta(seconds=3600)
    # A bearer credential must not be kept by any cache on the way.
    assert response["Cache-Control"] == "no-store"


def test_the_session_lifetime_follows_the_setting(api, ann, settings):
    settings.CUSTOMER_SESSION_TTL_SECONDS = 120

    body = api.post(URL, {"customer": ann.id}, format="json").json()

    lifetime = parse_datetime(body["expires_at"]) - timezone.now()
    assert timedelta(seconds=110) < lifetime <= timedelta(seconds=120)


def test_another_merchants_customer_is_404_naming_customer(api, other_merchant):
    stranger = CustomerFactory(merchant=other_merchant)

    response = api.post(URL, {"customer": stranger.id}, format="json")

    error = assert_error(response, 404, "resource_missing", "invalid_request_error")
    assert error["param"] == "customer"


def test_unknown_fields_and_a_missing_customer_are_400(api, ann):
    unknown = api.post(URL, {"customer": ann.id, "ttl": 99999}, format="json")
    missing = api.post(URL, {}, format="json")

    assert assert_error(unknown, 400, "parameter_unknown", "invalid_request_error")["param"] == (
        "ttl"
    )
    assert assert_error(missing, 400, "parameter_missing", "invalid_request_error")["param"] == (
        "customer"
    )


def test_a_publishable_key_cannot_mint_a_session(publishable_api, ann):
    response = publishable_api.post(URL, {"customer": ann.id}, format="json")

    assert_error(response, 403, "permission_denied", "permission_error")


def test_a_customer_session_cannot_mint_another(ann_api, bob):
    response = ann_api.post(URL, {"customer": bob.id}, format="json")

    assert_error(response, 403, "permission_denied", "permission_error")


# --- Reading with a session -------------------------------------------------------------


def test_a_session_lists_only_its_own_customers_payments(
    ann_api, merchant, other_merchant, ann, bob
):
    first = PaymentFactory(merchant=merchant, customer=ann)
    second = PaymentFactory(merchant=merchant, customer=ann, status="succeeded")
    PaymentFactory(merchant=merchant, customer=bob)
    PaymentFactory(merchant=merchant)  # no customer at all
    PaymentFactory(merchant=other_merchant, customer=CustomerFactory(merchant=other_merchant))

    ids = listed_ids(ann_api)

    assert ids == [second.id, first.id]
    assert listed_ids(ann_api, "status=succeeded") == [second.id]
    page = ann_api.get(f"{PAYMENTS}?limit=1").json()
    assert [p["id"] for p in page["results"]] == [second.id]
    assert [p["id"] for p in ann_api.get(page["next"]).json()["results"]] == [first.id]


def test_a_session_cannot_widen_the_list_to_another_customer(ann_api, merchant, ann, bob):
    own = PaymentFactory(merchant=merchant, customer=ann)
    PaymentFactory(merchant=merchant, customer=bob)

    assert listed_ids(ann_api, f"customer={bob.id}") == []
    assert listed_ids(ann_api, f"customer={ann.id}") == [own.id]


def test_a_session_reads_its_own_payment_and_its_timeline(api, ann_api, ann):
    payment_id = api.post(
        PAYMENTS, {"amount": "599.00", "currency": "RUB", "customer": ann.id}, format="json"
    ).json()["id"]

    payment = ann_api.get(f"{PAYMENTS}/{payment_id}")
    events = ann_api.get(f"{PAYMENTS}/{payment_id}/events")

    assert payment.status_code == 200 and payment.json()["customer"] == ann.id
    assert events.status_code == 200
    assert [e["type"] for e in events.json()["results"]] == ["created"]


def test_another_customers_payment_is_404_even_of_the_same_merchant(ann_api, merchant, bob):
    payment = PaymentFactory(merchant=merchant, customer=bob)

    for path in ["", "/events"]:
        response = ann_api.get(f"{PAYMENTS}/{payment.id}{path}")
        assert_error(response, 404, "resource_missing", "invalid_request_error")


def test_a_test_mode_session_cannot_see_live_payments(ann_api, merchant, ann):
    live = PaymentFactory(merchant=merchant, customer=ann, livemode=True)
    test = PaymentFactory(merchant=merchant, customer=ann, livemode=False)

    assert listed_ids(ann_api) == [test.id]
    assert_error(
        ann_api.get(f"{PAYMENTS}/{live.id}"), 404, "resource_missing", "invalid_request_error"
    )


def test_a_live_key_mints_a_live_session(merchant, ann):
    live_api = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)
    live = PaymentFactory(merchant=merchant, customer=ann, livemode=True)
    PaymentFactory(merchant=merchant, customer=ann, livemode=False)

    response = live_api.post(URL, {"customer": ann.id}, format="json")

    assert response.json()["livemode"] is True
    assert listed_ids(client_for(response.json()["token"])) == [live.id]


# --- What a session cannot do -----------------------------------------------------------


@pytest.mark.parametrize(
    "path, body",
    [
        ("", {"amount": "599.00", "currency": "RUB"}),
        ("/{id}/refunds", {}),
        ("/{id}/cancel", {}),
        ("/{id}/capture", {}),
    ],
)
def test_a_session_cannot_create_or_move_money(ann_api, merchant, ann, path, body):
    payment = PaymentFactory(
        merchant=merchant, customer=ann, status="succeeded", amount_captured="599.00"
    )

    response = ann_api.post(f"{PAYMENTS}{path.format(id=payment.id)}", body, format="json")

    assert_error(response, 403, "permission_denied", "permission_error")
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert Payment.objects.count() == 1 and not Refund.objects.exists()


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/customers"),
        ("get", "/api/v1/customers/{customer}"),
        ("get", "/api/v1/customers/{customer}/credits"),
        ("post", "/api/v1/customers/{customer}/credits"),
        ("get", "/api/v1/payments/{payment}/refunds"),
        ("get", "/api/v1/refunds"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/webhook_endpoints"),
        ("post", "/api/v1/webhook_endpoints"),
        ("get", "/api/v1/config"),
    ],
)
def test_a_session_is_refused_everything_but_its_payments(ann_api, merchant, ann, method, path):
    payment = PaymentFactory(merchant=merchant, customer=ann)
    url = path.format(customer=ann.id, payment=payment.id)

    response = getattr(ann_api, method)(url, {}, format="json")

    assert_error(response, 403, "permission_denied", "permission_error")


# --- Tokens that are not (or no longer) good --------------------------------------------


def test_an_expired_session_is_401(api, ann):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        client = client_for(mint(api, ann))
        traveller.shift(timedelta(seconds=3590))
        assert client.get(PAYMENTS).status_code == 200

        traveller.shift(timedelta(seconds=20))
        response = client.get(PAYMENTS)

    error = assert_error(response, 401, "invalid_api_key", "authentication_error")
    assert "customer session" in error["message"]


def test_a_tampered_token_is_401(api, ann, bob):
    header, payload, signature = mint(api, ann).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload = b64url({**claims, "sub": bob.id})
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")

    for token in [f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{flipped}"]:
        response = client_for(token).get(PAYMENTS)
        assert_error(response, 401, "invalid_api_key", "authentication_error")


def test_an_unsigned_alg_none_token_is_401(ann):
    token = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims_for(ann))}."

    response = client_for(token).get(PAYMENTS)

    error = assert_error(response, 401, "invalid_api_key", "authentication_error")
    assert "customer session" in error["message"]


# PyJWT warns that a 32-byte key is short for HS512: beside the point for a forged token.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    "key, algorithm",
    [
        ("raw-secret-key", "HS256"),  # signed with SECRET_KEY itself, not the derived key
        ("derived-key", "HS512"),  # the right key, an algorithm we do not accept
    ],
)
def test_tokens_signed_any_other_way_are_401(ann, settings, key, algorithm):
    signing_key = (
        settings.SECRET_KEY if key == "raw-secret-key" else customer_tokens._signing_keys()[0]
    )
    token = jwt.encode(claims_for(ann), signing_key, algorithm=algorithm)

    response = client_for(token).get(PAYMENTS)

    assert_error(response, 401, "invalid_api_key", "authentication_error")


def test_a_token_missing_a_required_claim_is_401(ann):
    claims = claims_for(ann)
    del claims["exp"]
    token = jwt.encode(claims, customer_tokens._signing_keys()[0], algorithm="HS256")

    response = client_for(token).get(PAYMENTS)

    assert_error(response, 401, "invalid_api_key", "authentication_error")


def test_a_deleted_customer_ends_its_sessions(api, ann):
    client = client_for(mint(api, ann))

    ann.delete()

    assert_error(client.get(PAYMENTS), 401, "invalid_api_key", "authentication_error")


def test_a_token_naming_another_merchant_for_the_customer_is_401(ann, other_merchant):
    # Correctly signed, but the customer does not belong to the merchant it names.
    claims = claims_for(ann, mer=other_merchant.id)
    token = jwt.encode(claims, customer_tokens._signing_keys()[0], algorithm="HS256")

    response = client_for(token).get(PAYMENTS)

    assert_error(response, 401, "invalid_api_key", "authentication_error")


def test_a_disabled_merchant_refuses_its_sessions(ann_api, merchant):
    merchant.is_active = False
    merchant.save(update_fields=["is_active"])

    response = ann_api.get(PAYMENTS)

    assert_error(response, 403, "account_disabled", "permission_error")


def test_sessions_survive_a_secret_key_rotation_until_they_expire(api, ann, settings):
    client = client_for(mint(api, ann))
    old_secret = settings.SECRET_KEY

    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdef"
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    assert client.get(PAYMENTS).status_code == 200

    settings.SECRET_KEY_FALLBACKS = []
    assert_error(client.get(PAYMENTS), 401, "invalid_api_key", "authentication_error")


def test_idempotency_replays_never_cross_from_one_customer_to_another(ann, bob, secret_key):
    # Given the same key, method, path and body, sent by two customers and by a secret key
    def fingerprint(user):
        request = SimpleNamespace(method="POST", path="/api/v1/x/1/cancel", data={}, user=user)
        return idempotency.request_fingerprint(request)

    api_key = selectors.api_key_get_by_raw_key(secret_key)

    # Then each customer's request is a different request (a 422 on reuse, never a replay),
    # while a key's fingerprint does not depend on which key of the merchant sent it.
    as_ann = fingerprint(ApiPrincipal.for_customer(ann, livemode=False))
    as_bob = fingerprint(ApiPrincipal.for_customer(bob, livemode=False))
    as_key = fingerprint(ApiPrincipal.for_api_key(api_key))
    assert len({as_ann, as_bob, as_key}) == 3
    other_key = APIKeyFactory(merchant=ann.merchant)
    assert fingerprint(ApiPrincipal.for_api_key(other_key)) == as_key


# --- Configuration and docs -------------------------------------------------------------


@pytest.mark.parametrize("ttl", ["59", "86401"])
def test_refuses_to_start_with_a_session_lifetime_out_of_bounds(ttl):
    env = {**os.environ, "CUSTOMER_SESSION_TTL_SECONDS": ttl}

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "CUSTOMER_SESSION_TTL_SECONDS must be between 60 and 86400" in result.stderr


def test_the_schema_documents_customer_sessions(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert "post" in schema["paths"]["/api/v1/customer_sessions"]
    assert "customer session" in schema["components"]["securitySchemes"]["ApiKey"]["description"]
    assert "customer session" in schema["paths"]["/api/v1/payments"]["get"]["description"]
