"""
A subscription's life over several periods, through the API, the sandbox and the renewal
job, with the clock moved by time-machine: activation, renewals (charged once per
period), dunning, cancellation now and at period end, trials, expiry, refunds.
"""

import io
from datetime import UTC, datetime, timedelta

import pytest
from pypdf import PdfReader

from billing.models import Invoice
from conftest import run_concurrently
from payments.models import Payment, SandboxPayment, SandboxPaymentMethod
from payments.services import payment_charge_start
from subscriptions.models import Subscription
from subscriptions.tests.flows import (
    CARD_DECLINED,
    CARD_DECLINES_OFF_SESSION,
    pay,
    pay_subscription,
    plan_create,
    run_due,
    subscribe,
)
from webhooks import callbacks
from webhooks.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _events(subscription_id: str) -> list[str]:
    events = Event.objects.filter(object_id=subscription_id).order_by("id")
    return list(events.values_list("type", flat=True))


def _invoices(api, subscription_id: str) -> list[dict]:
    body = api.get(f"/api/v1/invoices?subscription={subscription_id}").json()
    return list(reversed(body["results"]))  # oldest first


def _active(api, clock, card="4242424242424242") -> dict:
    subscription = subscribe(api, "premium")
    return pay_subscription(api, subscription, card)


def test_subscribe_pay_and_get_an_active_subscription_with_a_paid_invoice_and_pdf(
    api, premium, clock
):
    subscription = subscribe(api, "premium")

    assert subscription["status"] == "incomplete"
    assert subscription["plan"]["code"] == "premium"
    assert subscription["checkout_url"].startswith("http://testserver/pay/pay_")
    first_invoice = api.get(f"/api/v1/invoices/{subscription['latest_invoice']}").json()
    assert (first_invoice["status"], first_invoice["number"]) == ("draft", None)

    subscription = pay_subscription(api, subscription)

    assert subscription["status"] == "active"
    assert subscription["current_period_start"] == _iso(START)
    # Anchored on 31 January: the next period ends on the last day of February.
    assert subscription["current_period_end"] == "2026-02-28T10:00:00.000000Z"
    assert subscription["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242"}
    assert subscription["checkout_url"] is None
    [invoice] = _invoices(api, subscription["id"])
    assert invoice["status"] == "paid"
    assert invoice["number"] == "TEST-2026-000001"
    assert (invoice["total"], invoice["amount_paid"], invoice["amount_due"]) == (
        "599.00",
        "599.00",
        "0.00",
    )
    assert invoice["lines"][0]["plan"] == premium.pk
    assert _events(subscription["id"]) == ["subscription.activated"]
    assert Event.objects.filter(type="invoice.paid", object_id=invoice["id"]).count() == 1

    pdf = api.get(f"/api/v1/invoices/{invoice['id']}/pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "TEST-2026-000001" in text


def test_renewal_charges_the_saved_card_once_per_period(api, premium, clock, receiver):
    callbacks.endpoint_create(
        merchant=premium.merchant, url=receiver.url, enabled_events=["subscription.renewed"]
    )
    subscription = _active(api, clock)

    clock.move_to("2026-02-28 09:30:00+00:00")  # inside the hour before the period ends
    run_due()
    run_due()  # a second beat, or the same one again: nothing more is charged

    renewed = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert renewed["status"] == "active"
    assert renewed["current_period_start"] == "2026-02-28T10:00:00.000000Z"
    assert renewed["current_period_end"] == "2026-03-31T10:00:00.000000Z"
    invoices = _invoices(api, subscription["id"])
    assert [(i["number"], i["status"], i["billing_reason"]) for i in invoices] == [
        ("TEST-2026-000001", "paid", "subscription_create"),
        ("TEST-2026-000002", "paid", "subscription_cycle"),
    ]
    assert invoices[1]["period_start"] == "2026-02-28T10:00:00.000000Z"
    renewal = Payment.objects.get(pk=invoices[1]["payment"])
    assert (renewal.off_session, renewal.status, renewal.amount_captured) == (
        True,
        "succeeded",
        premium.amount,
    )
    assert SandboxPayment.objects.filter(off_session=True).count() == 1
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]
    # The merchant's endpoint got the callback, sent once the renewal committed.
    assert [r.json()["type"] for r in receiver.received] == ["subscription.renewed"]
    assert receiver.received[0].json()["data"]["object"]["current_period_end"] == (
        "2026-03-31T10:00:00.000000Z"
    )

    clock.move_to("2026-03-31 09:30:00+00:00")
    run_due()
    assert len(_invoices(api, subscription["id"])) == 3
    assert Subscription.objects.get(pk=subscription["id"]).current_period_end == datetime(
        2026, 4, 30, 10, 0, tzinfo=UTC
    )


def test_two_renewal_jobs_at_once_charge_once(api, premium, clock):
    subscription = _active(api, clock)
    clock.move_to("2026-02-28 09:30:00+00:00")

    run_concurrently(4, run_due)

    assert Invoice.objects.filter(subscription_id=subscription["id"]).count() == 2
    assert Payment.objects.filter(off_session=True).count() == 1
    assert SandboxPayment.objects.filter(off_session=True).count() == 1
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.renewed"]


def test_a_retried_charge_task_does_not_charge_again(api, premium, clock):
    subscription = _active(api, clock)
    clock.move_to("2026-02-28 09:30:00+00:00")
    run_due()
    renewal = Payment.objects.get(off_session=True)

    # The task is delivered again (acks_late after a worker crash), and the sweep fires.
    payment_charge_start(payment_id=renewal.pk)
    Payment.objects.filter(pk=renewal.pk).update(status="pending")  # even if it looked unpaid
    payment_charge_start(payment_id=renewal.pk)

    assert SandboxPayment.objects.filter(reference=renewal.pk).count() == 1
    assert Invoice.objects.filter(subscription_id=subscription["id"]).count() == 2


def test_a_declining_card_goes_past_due_then_canceled_on_the_dunning_schedule(
    api, premium, clock, settings
):
    settings.SUBSCRIPTION_DUNNING_DAYS = [1, 3, 5]
    subscription = _active(api, clock, CARD_DECLINES_OFF_SESSION)
    sub_id = subscription["id"]

    clock.move_to("2026-02-28 09:30:00+00:00")
    run_due()
    state = api.get(f"/api/v1/subscriptions/{sub_id}").json()
    assert state["status"] == "past_due"
    assert _events(sub_id) == ["subscription.activated", "subscription.past_due"]

    for day, status in [(1, "past_due"), (3, "past_due"), (5, "canceled")]:
        clock.move_to(datetime(2026, 2, 28, 9, 30, tzinfo=UTC) + timedelta(days=day, minutes=1))
        run_due()
        assert api.get(f"/api/v1/subscriptions/{sub_id}").json()["status"] == status, day

    state = api.get(f"/api/v1/subscriptions/{sub_id}").json()
    assert state["cancellation_reason"] == "payment_failed"
    attempts = Payment.objects.filter(off_session=True).order_by("id")
    assert [p.status for p in attempts] == ["failed"] * 4  # the first try and three retries
    assert {p.failure_code for p in attempts} == {"card_declined"}
    renewal_invoice = _invoices(api, sub_id)[1]
    assert (renewal_invoice["status"], renewal_invoice["attempt_count"]) == ("void", 4)
    assert _events(sub_id) == [
        "subscription.activated",
        "subscription.past_due",
        "subscription.canceled",
    ]
    clock.shift(timedelta(days=40))
    run_due()
    assert Payment.objects.filter(off_session=True).count() == 4  # nothing after the end


def test_a_retry_that_succeeds_renews_from_the_original_period_end(api, premium, clock):
    subscription = _active(api, clock, CARD_DECLINES_OFF_SESSION)
    clock.move_to("2026-02-28 09:30:00+00:00")
    run_due()
    # The customer sorts their card out with the bank.
    SandboxPaymentMethod.objects.update(declines_off_session=False)

    clock.move_to("2026-03-01 09:31:00+00:00")
    run_due()

    state = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert state["status"] == "active"
    assert state["current_period_start"] == "2026-02-28T10:00:00.000000Z"
    assert state["current_period_end"] == "2026-03-31T10:00:00.000000Z"
    assert _events(subscription["id"])[-1] == "subscription.renewed"
    assert [i["status"] for i in _invoices(api, subscription["id"])] == ["paid", "paid"]


def test_cancel_at_period_end_stops_renewal_and_ends_on_time(api, premium, clock):
    subscription = _active(api, clock)

    response = api.post(
        f"/api/v1/subscriptions/{subscription['id']}/cancel", {"at_period_end": True}, format="json"
    )

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["cancel_at_period_end"]) == (
        "active",
        True,
    )
    clock.move_to("2026-02-28 09:30:00+00:00")
    run_due()
    assert Payment.objects.filter(off_session=True).count() == 0
    assert api.get(f"/api/v1/subscriptions/{subscription['id']}").json()["status"] == "active"
    clock.move_to("2026-02-28 10:00:01+00:00")
    run_due()
    ended = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert ended["status"] == "canceled"
    assert ended["ended_at"] == "2026-02-28T10:00:00.000000Z"
    assert _events(subscription["id"]) == ["subscription.activated", "subscription.canceled"]


def test_cancel_now_before_paying_closes_the_checkout(api, premium, clock):
    subscription = subscribe(api, "premium")
    payment_id = subscription["checkout_url"].rsplit("/", 1)[-1]

    response = api.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", {}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled"
    assert Payment.objects.get(pk=payment_id).status == "canceled"
    assert SandboxPayment.objects.get(reference=payment_id).status == "canceled"
    invoice = Invoice.objects.get(subscription_id=subscription["id"])
    assert (invoice.status, invoice.number) == ("void", None)
    again = api.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", {}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "subscription_invalid_state"


def test_an_unpaid_first_invoice_expires_the_subscription(api, premium, clock):
    subscription = subscribe(api, "premium")

    clock.shift(timedelta(hours=23, minutes=1))
    run_due()

    state = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert state["status"] == "expired"
    assert Payment.objects.get(pk=subscription["checkout_url"].rsplit("/", 1)[-1]).status == (
        "canceled"
    )
    assert _events(subscription["id"]) == ["subscription.expired"]


def test_a_declined_first_payment_expires_the_subscription(api, premium, clock):
    subscription = subscribe(api, "premium")

    state = pay_subscription(api, subscription, CARD_DECLINED)

    assert state["status"] == "expired"
    assert state["cancellation_reason"] == "first_payment_failed"
    assert Invoice.objects.get(subscription_id=subscription["id"]).status == "void"


def test_trial_then_the_customer_pays_the_link_and_renewals_charge_the_card(api, merchant, clock):
    plan_create(merchant, "basic", "299.00", trial_days=7)
    subscription = subscribe(api, "basic")
    assert subscription["status"] == "trialing"
    assert subscription["trial_end"] == "2026-02-07T10:00:00.000000Z"
    assert subscription["checkout_url"] is None
    assert Payment.objects.count() == 0

    clock.move_to("2026-02-07 09:30:00+00:00")
    run_due()
    state = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert state["status"] == "past_due"  # no card yet: the customer must pay the link
    assert state["checkout_url"]
    assert _events(subscription["id"]) == ["subscription.past_due"]

    state = pay_subscription(api, state)
    assert state["status"] == "active"
    assert (state["current_period_start"], state["current_period_end"]) == (
        "2026-02-07T10:00:00.000000Z",
        "2026-03-07T10:00:00.000000Z",
    )
    assert _events(subscription["id"])[-1] == "subscription.activated"

    clock.move_to("2026-03-07 09:30:00+00:00")
    run_due()
    assert Payment.objects.filter(off_session=True, status="succeeded").count() == 1
    assert _events(subscription["id"])[-1] == "subscription.renewed"


def test_refunding_a_subscription_payment_in_full_cancels_it(api, premium, clock):
    subscription = _active(api, clock)
    [invoice] = _invoices(api, subscription["id"])

    partial = api.post(
        f"/api/v1/payments/{invoice['payment']}/refunds", {"amount": "100.00"}, format="json"
    )
    assert partial.status_code == 201
    run_due()  # the sandbox's refund webhook arrives
    assert api.get(f"/api/v1/subscriptions/{subscription['id']}").json()["status"] == "active"

    rest = api.post(f"/api/v1/payments/{invoice['payment']}/refunds", {}, format="json")
    assert rest.status_code == 201
    run_due()

    state = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert (state["status"], state["cancellation_reason"]) == ("canceled", "refunded")
    credited = api.get(f"/api/v1/invoices/{invoice['id']}").json()
    assert credited["amount_credited"] == "599.00"
    assert [note["number"] for note in credited["credit_notes"]] == [
        "TEST-2026-000001-CN1",
        "TEST-2026-000001-CN2",
    ]


def test_money_for_a_subscription_that_ended_meanwhile_is_given_back(api, premium, clock):
    subscription = subscribe(api, "premium")
    payment_id = subscription["checkout_url"].rsplit("/", 1)[-1]
    # The subscription expires while the buyer still has the checkout open; the checkout
    # closes, but say the provider had already taken the money.
    Subscription.objects.filter(pk=subscription["id"]).update(status="expired")

    pay(payment_id)

    refunds = api.get(f"/api/v1/payments/{payment_id}/refunds").json()["results"]
    assert len(refunds) == 1 and refunds[0]["amount"] == "599.00"


def test_an_unpaid_link_after_a_trial_is_never_doubled_and_is_closed_at_the_end(
    api, merchant, clock
):
    plan_create(merchant, "basic", "299.00", trial_days=7)
    subscription = subscribe(api, "basic")
    clock.move_to("2026-02-07 09:30:00+00:00")
    run_due()
    link = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()["checkout_url"]

    for day in (1, 3):
        clock.move_to(datetime(2026, 2, 7, 9, 31, tzinfo=UTC) + timedelta(days=day))
        run_due()
        state = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
        assert (state["status"], state["checkout_url"]) == ("past_due", link)
    assert Payment.objects.count() == 1  # the same pay link all along

    clock.move_to(datetime(2026, 2, 12, 9, 32, tzinfo=UTC))
    run_due()

    state = api.get(f"/api/v1/subscriptions/{subscription['id']}").json()
    assert (state["status"], state["checkout_url"]) == ("canceled", None)
    assert Payment.objects.get().status == "canceled"  # the link can no longer be paid
    assert _invoices(api, subscription["id"])[0]["status"] == "void"
