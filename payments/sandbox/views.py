"""The sandbox's hosted checkout pages (the provider's domain, in a real deployment)."""

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from payments import money
from payments.models import SandboxPayment
from payments.sandbox import gateway

TEST_CARDS_HELP = [
    ("4242 4242 4242 4242", "succeeds"),
    ("4000 0000 0000 0002", "declined"),
    ("4000 0000 0000 9995", "declined: insufficient funds"),
    ("4000 0025 0000 3155", "asks you to confirm"),
    ("4000 0000 0000 0341", "succeeds; later renewals decline"),
]


def _payment_or_404(sandbox_payment_id: str) -> SandboxPayment:
    try:
        return gateway.payment_get(sandbox_payment_id)
    except gateway.SandboxError:
        raise Http404("No such sandbox payment.") from None


def _back_to_merchant(payment: SandboxPayment):
    return redirect(payment.return_url) if payment.return_url else None


@never_cache
@require_http_methods(["GET", "POST"])
def checkout(request, sandbox_payment_id: str):
    payment = _payment_or_404(sandbox_payment_id)
    error = ""
    if request.method == "POST" and payment.status == SandboxPayment.Status.OPEN:
        try:
            payment = gateway.checkout_submit(payment.pk, request.POST.get("card_number", ""))
        except gateway.CardRejected as exc:
            error = str(exc)
    if payment.status == SandboxPayment.Status.REQUIRES_CONFIRMATION:
        return redirect("sandbox-confirm", sandbox_payment_id=payment.pk)
    if payment.status != SandboxPayment.Status.OPEN:
        back = _back_to_merchant(payment)
        if back:
            return back
    context = {
        "payment": payment,
        "amount": money.amount_format(payment.amount, payment.currency),
        "error": error,
        "test_cards": TEST_CARDS_HELP,
    }
    return render(request, "sandbox/checkout.html", context, status=400 if error else 200)


@never_cache
@require_http_methods(["GET", "POST"])
def confirm(request, sandbox_payment_id: str):
    payment = _payment_or_404(sandbox_payment_id)
    if request.method == "POST":
        approve = request.POST.get("decision") == "approve"
        payment = gateway.checkout_confirm(payment.pk, approve)
    if payment.status != SandboxPayment.Status.REQUIRES_CONFIRMATION:
        return _back_to_merchant(payment) or redirect(
            "sandbox-checkout", sandbox_payment_id=payment.pk
        )
    amount = money.amount_format(payment.amount, payment.currency)
    return render(request, "sandbox/confirm.html", {"payment": payment, "amount": amount})
