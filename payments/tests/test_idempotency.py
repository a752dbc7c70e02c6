import psycopg
import pytest
from django.db import connection

from conftest import client_for, run_concurrently
from payments import idempotency
from payments.models import IdempotencyKey, Payment, SandboxPayment
from payments.tests.factories import APIKeyFactory
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/payments"
BODY = {"amount": "599.00", "currency": "RUB", "order_id": "o-1"}


def post(api, body=BODY, key="key-1", url=URL):
    return api.post(url, body, format="json", headers={"Idempotency-Key": key})


def test_a_retry_replays_the_first_response_byte_for_byte(api):
    first = post(api)
    second = post(api)

    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Payment.objects.count() == 1


def test_key_order_and_spacing_of_the_body_do_not_matter(api):
    first = post(api, {"currency": "RUB", "order_id": "o-1", "amount": "599.00"})

    assert post(api).content == first.content


def test_the_same_key_with_another_body_is_422(api):
    post(api)

    response = post(api, {**BODY, "amount": "600.00"})

    assert_error(response, 422, "idempotency_key_reused", "idempotency_error")
    assert Payment.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_422(api):
    payment_id = post(api).json()["id"]

    response = post(api, {}, url=f"{URL}/{payment_id}/cancel")

    assert_error(response, 422, "idempotency_key_reused", "idempotency_error")
    assert Payment.objects.get().status == "pending"


def test_keys_belong_to_one_merchant(api, other_api):
    mine = post(api).json()["id"]
    theirs = post(other_api).json()["id"]

    assert mine != theirs
    assert Payment.objects.count() == 2


def test_a_failed_request_stores_nothing_so_a_corrected_retry_runs(api):
    bad = post(api, {**BODY, "amount": "599.001"})
    good = post(api)

    assert bad.status_code == 400
    assert good.status_code == 201
    assert "Idempotent-Replayed" not in good
    assert IdempotencyKey.objects.count() == 1


def test_the_stored_key_commits_with_the_payment(api, merchant):
    payment_id = post(api).json()["id"]

    stored = IdempotencyKey.objects.get(merchant=merchant, key="key-1")
    assert payment_id in bytes(stored.response_body).decode()
    assert stored.response_status == 201


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "bad\x01key"])
def test_malformed_keys_are_400(api, key):
    response = post(api, key=key)

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert error["param"] == "Idempotency-Key"
    assert not Payment.objects.exists()


def test_without_a_key_each_request_is_new(api):
    api.post(URL, {"amount": "1.00", "currency": "RUB"}, format="json")
    api.post(URL, {"amount": "1.00", "currency": "RUB"}, format="json")

    assert Payment.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_is_running_is_409(merchant, settings):
    """The first request is simulated by another session holding the key's lock."""
    api = client_for(APIKeyFactory(merchant=merchant).raw_key)
    lock_id = idempotency._lock_id(f"{merchant.pk}:False", "key-1")
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [lock_id])

        response = post(api)

        other.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
    assert_error(response, 409, "idempotency_key_in_use", "idempotency_error")
    assert not Payment.objects.exists()
    assert post(api).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_requests_with_one_key_create_one_payment(merchant):
    """
    50 threads post the same body with the same key at once, on PostgreSQL. Exactly one
    payment and one provider checkout exist afterwards, and every answer is the replayed
    201 or a 409 (in flight).
    """
    raw_key = APIKeyFactory(merchant=merchant).raw_key

    responses = run_concurrently(50, lambda: post(client_for(raw_key), key="race"))

    assert Payment.objects.count() == 1
    assert SandboxPayment.objects.count() == 1  # one provider call
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    created = [r for r in responses if r.status_code == 201]
    first = [r for r in created if "Idempotent-Replayed" not in r]
    assert len(first) == 1
    assert all(r.content == first[0].content for r in created)
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_key_in_use"


def test_test_and_live_keys_do_not_share_idempotency_keys(merchant, settings):
    settings.STRIPE_SECRET_KEY = "sk_live_configured"  # a live provider for the live key
    test_key = client_for(APIKeyFactory(merchant=merchant).raw_key)
    live_key = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)

    first = post(test_key, key="order-42")
    second = post(live_key, {**BODY, "order_id": "o-2", "provider": "stripe"}, key="order-42")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert second.json()["livemode"] is True and first.json()["livemode"] is False
    assert Payment.objects.count() == 2
