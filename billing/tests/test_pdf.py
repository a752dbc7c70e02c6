import io
from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock

import pytest
from pypdf import PdfReader
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from billing.models import BillingProfile, CreditNote, Invoice, InvoiceLine, InvoiceStatus
from billing.pdf import DataOnlyURLFetcher, ResourceRefused, invoice_pdf_render
from payments.tests.factories import CustomerFactory, MerchantFactory

pytestmark = pytest.mark.django_db

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
# The smallest valid PNG: one transparent pixel.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _invoice(*, merchant=None, customer=None, status=InvoiceStatus.PAID, number="INV-2026-000042"):
    """A one-line RUB invoice for 599.00, issued (with snapshots) unless it is a draft."""
    merchant = merchant or MerchantFactory(name="Книжный магазин")
    customer = customer or CustomerFactory(merchant=merchant, name="Иван Петров")
    issued = status != InvoiceStatus.DRAFT
    paid = status == InvoiceStatus.PAID
    invoice = Invoice.objects.create(
        merchant=merchant,
        customer=customer,
        number=number if issued else None,
        status=status,
        currency="RUB",
        subtotal=Decimal("599.00"),
        total=Decimal("599.00"),
        amount_paid=Decimal("599.00") if paid else Decimal(0),
        period_start=MARCH,
        period_end=APRIL,
        finalized_at=MARCH if issued else None,
        paid_at=MARCH if paid else None,
        customer_details=(
            {"name": customer.name, "email": customer.email, "external_id": customer.external_id}
            if issued
            else {}
        ),
        merchant_details=(
            {
                "name": merchant.name,
                "legal_name": 'ООО "Книги"',
                "address": "ул. Ленина, 1\nМосква",
                "tax_id": "7701234567",
                "email": "billing@books.example",
                "footer": "Спасибо за покупку!",
            }
            if issued
            else {}
        ),
    )
    InvoiceLine.objects.create(
        invoice=invoice,
        description="Тариф «Премиум» (месяц)",
        quantity=1,
        unit_amount=Decimal("599.00"),
        amount=Decimal("599.00"),
        period_start=MARCH,
        period_end=APRIL,
    )
    return invoice


def test_paid_invoice_shows_number_lines_amounts_and_cyrillic_names():
    invoice = _invoice()

    pdf = invoice_pdf_render(invoice)

    assert pdf.startswith(b"%PDF")
    text = _pdf_text(pdf)
    assert "INV-2026-000042" in text
    assert "Тариф «Премиум» (месяц)" in text
    assert "599.00 RUB" in text
    assert "Иван Петров" in text
    assert 'ООО "Книги"' in text
    assert "7701234567" in text
    assert "Спасибо за покупку!" in text
    assert "PAID" in text
    assert "2026-03-01" in text  # issued, paid and period start, as UTC dates


def test_issued_invoice_keeps_the_details_it_was_issued_with():
    invoice = _invoice()
    invoice.customer.name = "Пётр Иванов"
    invoice.customer.save(update_fields=["name"])
    invoice.refresh_from_db()

    text = _pdf_text(invoice_pdf_render(invoice))

    assert "Иван Петров" in text
    assert "Пётр Иванов" not in text


def test_draft_shows_draft_without_a_number_and_the_live_details():
    merchant = MerchantFactory(name="Книжный магазин")
    BillingProfile.objects.create(
        merchant=merchant, legal_name="ООО Живые Книги", tax_id="7709999999"
    )
    invoice = _invoice(merchant=merchant, status=InvoiceStatus.DRAFT)

    text = _pdf_text(invoice_pdf_render(invoice))

    assert "Draft" in text
    assert "DRAFT" in text
    assert "INV-" not in text
    assert "Иван Петров" in text
    assert "ООО Живые Книги" in text
    assert "7709999999" in text


def test_merchant_without_billing_profile_still_renders():
    merchant = MerchantFactory(name="Plain Shop")
    invoice = _invoice(merchant=merchant, status=InvoiceStatus.DRAFT)

    text = _pdf_text(invoice_pdf_render(invoice))

    assert "Plain Shop" in text
    assert "599.00 RUB" in text


def test_void_invoice_is_marked_void():
    invoice = _invoice(status=InvoiceStatus.VOID)
    invoice.voided_at = APRIL
    invoice.save(update_fields=["voided_at"])

    text = _pdf_text(invoice_pdf_render(invoice))

    assert "VOID" in text
    assert "2026-04-01" in text


def test_credit_notes_are_listed_with_the_credited_total():
    invoice = _invoice()
    CreditNote.objects.create(
        invoice=invoice,
        number="INV-2026-000042-CN1",
        refund_id="re_test_1",
        amount=Decimal("150.50"),
        currency="RUB",
        reason="Частичный возврат",
    )
    invoice.amount_credited = Decimal("150.50")
    invoice.save(update_fields=["amount_credited"])

    text = _pdf_text(invoice_pdf_render(invoice))

    assert "INV-2026-000042-CN1" in text
    assert "150.50 RUB" in text
    assert "Частичный возврат" in text
    assert "Total credited" in text


def test_invoice_without_credit_notes_has_no_credit_section():
    text = _pdf_text(invoice_pdf_render(_invoice()))

    assert "Credit notes" not in text


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x.png",
        "https://example.com/logo.svg",
        "HTTP://EXAMPLE.COM/x.png",
        "ftp://example.com/x.png",
        "file:///etc/passwd",
    ],
)
def test_url_fetcher_refuses_everything_but_data_urls(url):
    with pytest.raises(ResourceRefused):
        DataOnlyURLFetcher()(url)


def test_url_fetcher_loads_data_urls():
    response = DataOnlyURLFetcher()(PIXEL)

    assert response.read().startswith(b"\x89PNG")


def test_remote_images_are_never_requested_while_rendering():
    html = f'<img src="http://example.com/x.png"><img src="{PIXEL}">'

    with mock.patch.object(
        URLFetcher, "fetch", autospec=True, side_effect=URLFetcher.fetch
    ) as fetch:
        document = HTML(string=html, base_url="/nonexistent", url_fetcher=DataOnlyURLFetcher())
        pdf = document.write_pdf()

    assert pdf.startswith(b"%PDF")
    # Only the inline image reached the real fetcher.
    assert [call.args[1] for call in fetch.call_args_list] == [PIXEL]
