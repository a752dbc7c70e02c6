"""
Invoices: one for every succeeded payment, numbered without gaps per merchant, mode and
year (also when issued concurrently), credit notes for refunds, and the invoices API.
"""

import io
import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import transaction
from pypdf import PdfReader

from billing import services
from billing.models import BillingProfile, Invoice
from billing.tests.flows import captured, credit_change, paid_with_credits, refunded
from conftest import run_concurrently
from payments import services as payment_services
from payments.tests.factories import CustomerFactory, MerchantFactory
from payments.tests.test_authentication import assert_error
from webhooks.models import Event

pytestmark = pytest.mark.django_db


def _issue(merchant, livemode=False) -> Invoice:
    return services.invoice_create(
        merchant=merchant,
        livemode=livemode,
        currency="RUB",
        lines=[services.Line(description="Popcorn", unit_amount=services.Decimal("150.00"))],
        finalize=True,
    )


def test_a_succeeded_payment_is_invoiced_paid_with_its_line_items(api, merchant):
    customer = CustomerFactory(merchant=merchant, name="Иван Петров")
    response = api.post(
        "/api/v1/payments",
        {
            "amount": "750.00",
            "currency": "RUB",
            "customer": customer.pk,
            "line_items": [
                {"description": "Ticket", "quantity": 2, "unit_amount": "300.00"},
                {"description": "Popcorn", "unit_amount": "150.00"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    payment_id = response.json()["id"]
    assert Invoice.objects.count() == 0  # nothing is billed before money is taken

    with transaction.atomic():
        payment_services.payment_transition(
            payment=payment_services.payment_lock(payment_id),
            to_status="succeeded",
            source="provider",
            amount_captured=services.Decimal("750.00"),
        )

    [invoice] = api.get(f"/api/v1/invoices?payment={payment_id}").json()["results"]
    assert (invoice["status"], invoice["billing_reason"]) == ("paid", "payment")
    assert re.fullmatch(r"TEST-\d{4}-000001", invoice["number"])
    lines = [(line["description"], line["quantity"], line["amount"]) for line in invoice["lines"]]
    assert lines == [("Ticket", 2, "600.00"), ("Popcorn", 1, "150.00")]
    assert invoice["customer_details"]["name"] == "Иван Петров"
    assert Event.objects.filter(type="invoice.paid", object_id=invoice["id"]).count() == 1


def test_line_items_must_add_up_to_the_amount(api):
    response = api.post(
        "/api/v1/payments",
        {
            "amount": "599.00",
            "currency": "RUB",
            "line_items": [{"description": "Ticket", "unit_amount": "500.00"}],
        },
        format="json",
    )

    error = assert_error(response, 400, "parameter_invalid", "invalid_request_error")
    assert error["param"] == "line_items"


def test_numbers_are_sequential_per_merchant_and_mode_and_restart_each_year(merchant):
    other = MerchantFactory()
    BillingProfile.objects.create(merchant=merchant, invoice_prefix="CIN", test_invoice_prefix="T")
    with time_machine.travel(datetime(2026, 12, 31, 23, 0, tzinfo=UTC), tick=False):
        numbers = [_issue(merchant).number for _ in range(3)]
        assert numbers == ["T-2026-000001", "T-2026-000002", "T-2026-000003"]
        assert _issue(merchant, livemode=True).number == "CIN-2026-000001"
        assert _issue(other).number == "TEST-2026-000001"
    with time_machine.travel(datetime(2027, 1, 1, 0, 30, tzinfo=UTC), tick=False):
        assert _issue(merchant).number == "T-2027-000001"


def test_a_rolled_back_issue_gives_its_number_back(merchant):
    _issue(merchant)
    with pytest.raises(RuntimeError), transaction.atomic():
        _issue(merchant)
        raise RuntimeError("the payment's transaction failed after the invoice was issued")

    assert _issue(merchant).number.endswith("-000002")


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuing_leaves_no_gaps_and_no_repeats(merchant):
    results = run_concurrently(8, lambda: _issue(merchant).number)

    assert sorted(results) == [f"TEST-{datetime.now(UTC).year}-{n:06d}" for n in range(1, 9)]


def test_a_refund_issues_a_credit_note_against_the_paid_invoice(merchant):
    payment = captured(merchant, "599.00")
    invoice = Invoice.objects.get(payment=payment)

    refund = refunded(payment, "99.00")

    invoice.refresh_from_db()
    [note] = invoice.credit_notes.all()
    assert (note.number, note.amount, note.refund_id) == (
        f"{invoice.number}-CN1",
        services.Decimal("99.00"),
        refund.pk,
    )
    assert invoice.amount_credited == services.Decimal("99.00")
    assert invoice.status == "paid"


def test_credits_payments_are_invoiced_too(merchant):
    customer = CustomerFactory(merchant=merchant)
    credit_change(customer, "grant", "500.00")
    payment = paid_with_credits(merchant, customer, "299.00")

    assert Invoice.objects.get(payment=payment).status == "paid"


def test_invoices_api_lists_filters_and_hides_other_merchants(api, other_api, merchant):
    first = captured(merchant, "100.00")
    captured(merchant, "200.00")

    listed = api.get("/api/v1/invoices").json()["results"]
    assert [invoice["total"] for invoice in listed] == ["200.00", "100.00"]
    paid = api.get("/api/v1/invoices?status=paid&payment=" + first.pk).json()["results"]
    assert [invoice["payment"] for invoice in paid] == [first.pk]
    assert api.get("/api/v1/invoices?status=nonsense").status_code == 400
    invoice_id = listed[0]["id"]
    assert other_api.get("/api/v1/invoices").json()["results"] == []
    assert_error(
        other_api.get(f"/api/v1/invoices/{invoice_id}"),
        404,
        "resource_missing",
        "invalid_request_error",
    )
    assert other_api.get(f"/api/v1/invoices/{invoice_id}/pdf").status_code == 404


def test_the_pdf_is_a_real_pdf_with_the_number(api, merchant):
    payment = captured(merchant, "599.00")
    invoice = Invoice.objects.get(payment=payment)

    response = api.get(f"/api/v1/invoices/{invoice.pk}/pdf", HTTP_ACCEPT="application/pdf")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Cache-Control"] == "private, no-store"
    text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    assert invoice.number in text
    assert "599.00" in text


def test_a_missing_pdf_is_a_json_404_even_when_asking_for_pdf(api):
    response = api.get("/api/v1/invoices/in_nope/pdf", HTTP_ACCEPT="application/pdf")

    assert_error(response, 404, "resource_missing", "invalid_request_error")
    assert response["Content-Type"].startswith("application/json")


def test_a_partial_capture_is_invoiced_for_what_was_taken(merchant):
    payment = payment_services.payment_create(
        merchant=merchant, amount="599.00", currency="RUB", provider="sandbox", capture=False
    )
    with transaction.atomic():
        payment_services.payment_transition(
            payment=payment_services.payment_lock(payment.pk),
            to_status="requires_capture",
            source="provider",
        )
    with transaction.atomic():
        payment_services.payment_transition(
            payment=payment_services.payment_lock(payment.pk),
            to_status="succeeded",
            source="api",
            amount_captured=services.Decimal("500.00"),
        )

    invoice = Invoice.objects.get(payment=payment)
    assert (invoice.total, invoice.amount_paid, invoice.amount_due) == (500, 500, 0)
