"""
Invoice PDFs: the invoice rendered with a Django template, then laid out by WeasyPrint.

The document reads from the invoice's frozen details, so a PDF fetched a year later says
what the issued invoice said. Rendering never goes to the network: an invoice template
(or a merchant's footer) naming a remote image must not make the web process fetch a URL
of someone else's choosing, so only inline `data:` resources load.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.template.loader import render_to_string
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from billing.models import Invoice, InvoiceStatus
from billing.services import merchant_details
from payments.money import amount_format

TEMPLATE = "billing/invoice_pdf.html"


class ResourceRefused(ValueError):
    """The PDF tried to load something other than an inline `data:` resource."""


class DataOnlyURLFetcher(URLFetcher):
    """Loads `data:` URLs and refuses every other scheme (http, https, ftp, file …)."""

    def fetch(self, url, headers=None):
        if not url.lower().startswith("data:"):
            raise ResourceRefused(f"Invoice PDFs load no external resources: {url[:200]}")
        # urllib's DataHandler decodes it in memory.
        return super().fetch(url, headers)


def invoice_pdf_render(invoice: Invoice) -> bytes:
    """The invoice as a PDF document (A4)."""
    html = render_to_string(TEMPLATE, _invoice_context(invoice))
    # A local, non-remote base: relative references resolve to file: URLs, which the
    # fetcher refuses like everything else that is not inline.
    document = HTML(
        string=html,
        base_url=str(settings.BASE_DIR / "templates" / "billing"),
        url_fetcher=DataOnlyURLFetcher(),
    )
    return document.write_pdf()


def _invoice_context(invoice: Invoice) -> dict:
    currency = invoice.currency

    def money(amount: Decimal) -> str:
        return f"{amount_format(amount, currency)} {currency}"

    credit_notes = [
        {
            "number": note.number,
            "date": _date(note.created_at),
            "amount": f"{amount_format(note.amount, note.currency)} {note.currency}",
            "reason": note.reason,
        }
        for note in invoice.credit_notes.all()
    ]
    return {
        "invoice": invoice,
        "number": invoice.number or "",
        "status_mark": InvoiceStatus(invoice.status).name,
        "status_class": invoice.status,
        "livemode": invoice.livemode,
        "issue_date": _date(invoice.finalized_at or invoice.created_at),
        "paid_date": _date(invoice.paid_at),
        "void_date": _date(invoice.voided_at),
        "period": _period(invoice.period_start, invoice.period_end),
        "customer": _customer(invoice),
        "merchant": _merchant(invoice),
        "lines": [
            {
                "description": line.description,
                "period": _period(line.period_start, line.period_end),
                "quantity": line.quantity,
                "unit_amount": money(line.unit_amount),
                "amount": money(line.amount),
            }
            for line in invoice.lines.all()
        ],
        "subtotal": money(invoice.subtotal),
        "total": money(invoice.total),
        "amount_paid": money(invoice.amount_paid),
        "amount_due": money(invoice.amount_due),
        "credit_notes": credit_notes,
        "amount_credited": money(invoice.amount_credited),
    }


def _customer(invoice: Invoice) -> dict:
    # An issued invoice shows the customer as they were when it was issued; a draft has
    # no snapshot yet, so it shows them as they are now.
    if invoice.customer_details:
        return invoice.customer_details
    customer = invoice.customer
    if customer is None:
        return {}
    return {"name": customer.name, "email": customer.email, "external_id": customer.external_id}


def _merchant(invoice: Invoice) -> dict:
    # The same shape finalization freezes, so the template has one case to handle.
    return invoice.merchant_details or merchant_details(invoice.merchant)


def _date(value: datetime | None) -> str:
    # Dates in UTC whatever the server's zone, so the same invoice prints the same
    # everywhere.
    return value.astimezone(UTC).date().isoformat() if value else ""


def _period(start: datetime | None, end: datetime | None) -> str:
    if not (start or end):
        return ""
    return f"{_date(start)} – {_date(end)}"
