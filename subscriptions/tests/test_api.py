"""The plans and subscriptions API: input checks, listing, idempotency, customer tokens."""

import pytest

from conftest import client_for
from payments.models import Payment
from payments.tests.factories import APIKeyFactory, CustomerFactory
from payments.tests.test_authentication import assert_error
from subscriptions.models import Subscription
from subscriptions.tests.flows import pay_subscription, plan_create, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def test_plans_are_listed_for_a_publishable_key_active_only(publishable_api, merchant):
    plan_create(merchant, "basic", "299.00")
    plan_create(merchant, "premium", "599.00")
    plan_create(merchant, "old", "199.00", active=False)

    response = publishable_api.get("/api/v1/plans")

    assert response.status_code == 200
    plans = response.json()["results"]
    assert [(p["code"], p["amount"], p["interval"]) for p in plans] == [
        ("premium", "599.00", "month"),
        ("basic", "299.00", "month"),
    ]
    assert plans[0]["object"] == "plan"


def test_plans_of_another_merchant_are_not_listed(other_api, merchant):
    plan_create(merchant, "basic", "299.00")

    assert other_api.get("/api/v1/plans").json()["results"] == []


def test_a_publishable_key_cannot_subscribe(publishable_api, premium):
    response = publishable_api.post(
        "/api/v1/subscriptions", {"plan": "premium", "customer": "cus_x"}, format="json"
    )

    assert_error(response, 403, "permission_denied", "permission_error")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"plan": "nope"}, "plan"),
        ({"plan": "premium", "provider": "credits"}, "provider"),
        ({"plan": "premium", "provider": "paypal"}, "provider"),
        ({"plan": "premium", "colour": "red"}, "colour"),
        ({"plan": "premium", "customer": "cus_missing"}, "customer"),
        ({"plan": "premium", "customer": "cus_\x00"}, "customer"),
    ],
)
def test_bad_subscribe_requests_are_400_and_change_nothing(api, premium, body, param):
    body = {"customer": {"external_id": "viewer-1"}, **body}

    response = api.post("/api/v1/subscriptions", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert Subscription.objects.count() == 0
    assert Payment.objects.count() == 0


def test_an_inactive_plan_is_not_sold(api, merchant):
    plan_create(merchant, "old", "199.00", active=False)

    response = api.post(
        "/api/v1/subscriptions", {"plan": "old", "customer": {"external_id": "v"}}, format="json"
    )

    assert_error(response, 400, "parameter_invalid", "invalid_request_error")


def test_a_second_running_subscription_to_the_same_plan_is_409(api, premium):
    pay_subscription(api, subscribe(api, "premium"))

    response = api.post(
        "/api/v1/subscriptions",
        {"plan": premium.pk, "customer": {"external_id": "viewer-1"}},
        format="json",
    )

    assert_error(response, 409, "subscription_exists", "invalid_request_error")


def test_subscribe_is_idempotent(api, premium):
    body = {"plan": "premium", "customer": {"external_id": "viewer-1"}}

    first = api.post("/api/v1/subscriptions", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/api/v1/subscriptions", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Subscription.objects.count() == 1
    assert Payment.objects.count() == 1


def test_list_filters_by_status_and_customer(api, merchant, premium):
    active = pay_subscription(api, subscribe(api, "premium"))
    other = subscribe(api, "premium", customer={"external_id": "viewer-2"})

    def ids(query):
        return [s["id"] for s in api.get(f"/api/v1/subscriptions{query}").json()["results"]]

    assert ids("") == [other["id"], active["id"]]
    assert ids("?status=active") == [active["id"]]
    assert ids(f"?customer={other['customer']}") == [other["id"]]
    assert ids("?plan=premium") == [other["id"], active["id"]]
    assert api.get("/api/v1/subscriptions?status=bogus").status_code == 400


def test_another_merchants_subscription_is_404(api, other_api, premium):
    subscription = subscribe(api, "premium")

    for response in (
        other_api.get(f"/api/v1/subscriptions/{subscription['id']}"),
        other_api.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", {}, format="json"),
    ):
        assert_error(response, 404, "resource_missing", "invalid_request_error")
    assert Subscription.objects.get().status == "incomplete"


def test_cancel_at_period_end_of_an_incomplete_subscription_is_409(api, premium):
    subscription = subscribe(api, "premium")

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/cancel",
        {"at_period_end": True},
        format="json",
    )

    error = assert_error(response, 409, "subscription_invalid_state", "invalid_request_error")
    assert error["param"] == "at_period_end"


# --- Customer tokens ------------------------------------------------------------------------


def _token_for(api, customer_id: str) -> str:
    response = api.post("/api/v1/customer_sessions", {"customer": customer_id}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["token"]


def test_a_customer_token_sees_only_that_customers_subscriptions_invoices_and_payments(
    api, merchant, premium
):
    mine = pay_subscription(api, subscribe(api, "premium"))
    theirs = pay_subscription(api, subscribe(api, "premium", customer={"external_id": "viewer-2"}))
    customer = client_for(_token_for(api, mine["customer"]))

    subscriptions = customer.get("/api/v1/subscriptions").json()["results"]
    assert [s["id"] for s in subscriptions] == [mine["id"]]
    invoices = customer.get("/api/v1/invoices").json()["results"]
    assert [i["subscription"] for i in invoices] == [mine["id"]]
    payments = customer.get("/api/v1/payments").json()["results"]
    assert {p["customer"] for p in payments} == {mine["customer"]}
    assert customer.get(f"/api/v1/invoices/{invoices[0]['id']}/pdf").status_code == 200

    for path in (
        f"/api/v1/subscriptions/{theirs['id']}",
        f"/api/v1/invoices/{theirs['latest_invoice']}",
        f"/api/v1/invoices/{theirs['latest_invoice']}/pdf",
    ):
        assert_error(customer.get(path), 404, "resource_missing", "invalid_request_error")
    assert_error(
        customer.post(f"/api/v1/subscriptions/{theirs['id']}/cancel", {}, format="json"),
        404,
        "resource_missing",
        "invalid_request_error",
    )
    assert_error(
        customer.post(
            "/api/v1/subscriptions",
            {"plan": "premium", "customer": mine["customer"]},
            format="json",
        ),
        403,
        "permission_denied",
        "permission_error",
    )
    assert_error(
        customer.post(f"/api/v1/payments/{payments[0]['id']}/refunds", {}, format="json"),
        403,
        "permission_denied",
        "permission_error",
    )
    assert Subscription.objects.get(pk=theirs["id"]).status == "active"


def test_a_customer_can_cancel_their_own_subscription(api, premium):
    mine = pay_subscription(api, subscribe(api, "premium"))
    customer = client_for(_token_for(api, mine["customer"]))

    response = customer.post(
        f"/api/v1/subscriptions/{mine['id']}/cancel", {"at_period_end": True}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["cancel_at_period_end"] is True


def test_a_live_key_cannot_subscribe_on_the_sandbox(merchant, premium):
    live = client_for(APIKeyFactory(merchant=merchant, livemode=True).raw_key)
    customer = CustomerFactory(merchant=merchant)

    response = live.post(
        "/api/v1/subscriptions", {"plan": "premium", "customer": customer.pk}, format="json"
    )

    assert_error(response, 400, "provider_not_enabled", "invalid_request_error")
