"""Pages the buyer sees on our domain: the pay link."""

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from payments import money, selectors
from payments.models import PaymentStatus

REFRESH_SECONDS = 2
_HEADINGS = {
    PaymentStatus.REQUIRES_CAPTURE: ("Payment authorized", "ok"),
    PaymentStatus.SUCCEEDED: ("Payment succeeded", "ok"),
    PaymentStatus.PARTIALLY_REFUNDED: ("Payment succeeded", "ok"),
    PaymentStatus.REFUNDED: ("Payment refunded", ""),
    PaymentStatus.FAILED: ("Payment failed", "bad"),
    PaymentStatus.CANCELED: ("Payment canceled", "bad"),
}


@never_cache
@require_GET
def pay_link(request, payment_id: str):
    """
    `/pay/<id>`, the `checkout_url` handed to client apps: sends the buyer to the
    provider's page once it exists, waits politely until then, and tells the outcome.
    """
    payment = selectors.payment_get_public(payment_id)
    if payment is None:
        raise Http404("No such payment.")
    context = {"payment": payment, "amount": money.amount_format(payment.amount, payment.currency)}
    if payment.status == PaymentStatus.PENDING:
        returning = "returned" in request.GET
        if payment.provider_checkout_url and not returning:
            return redirect(payment.provider_checkout_url)
        context.update(
            refresh_seconds=REFRESH_SECONDS,
            heading="Confirming your payment…" if returning else "Preparing your payment…",
            detail=(
                "We are waiting for the payment provider to confirm."
                if returning
                else "You will be taken to the payment page in a moment."
            ),
        )
        return render(request, "payments/pay_waiting.html", context)
    heading, tone = _HEADINGS[payment.status]
    context.update(heading=heading, tone=tone)
    return render(request, "payments/pay_status.html", context)
