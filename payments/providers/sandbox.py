"""Adapter for the built-in sandbox provider (`payments.sandbox`)."""

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal

from payments import signing
from payments.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    ProviderDeclined,
    ProviderEvent,
    ProviderPayment,
    ProviderRefund,
    SavedMethodCharge,
    WebhookVerificationError,
)
from payments.sandbox import gateway

# The sandbox's statuses in our vocabulary.
_STATUS = {
    "open": "pending",
    "requires_confirmation": "pending",
    "requires_capture": "requires_capture",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}


class SandboxProvider:
    name = "sandbox"
    # The sandbox is on this machine: big pages cost nothing but memory.
    list_page_size = 5000

    def checkout_create(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutResult:
        with _mapped_errors():
            payment = gateway.payment_open(
                idempotency_key=idempotency_key,
                reference=request.payment_id,
                amount=request.amount,
                currency=request.currency,
                manual_capture=not request.capture,
                return_url=request.return_url,
                description=request.description,
                save_payment_method=request.save_payment_method,
            )
        return CheckoutResult(
            provider_payment_id=payment.id,
            checkout_id=payment.id,
            checkout_url=gateway.checkout_url(payment),
        )

    def payment_retrieve(self, provider_payment_id: str) -> ProviderPayment:
        with _mapped_errors():
            return _to_provider_payment(
                gateway.payment_object(gateway.payment_get(provider_payment_id))
            )

    def payment_capture(
        self, provider_payment_id: str, amount: Decimal, *, idempotency_key: str
    ) -> ProviderPayment:
        with _mapped_errors():
            payment = gateway.payment_capture(provider_payment_id, amount)
        return _to_provider_payment(gateway.payment_object(payment))

    def payment_cancel(
        self, provider_payment_id: str, *, idempotency_key: str, checkout_id: str = ""
    ) -> ProviderPayment:
        # The sandbox's checkout and payment are one object: either id names it.
        with _mapped_errors():
            payment = gateway.payment_cancel(provider_payment_id or checkout_id)
        return _to_provider_payment(gateway.payment_object(payment))

    def refund_create(
        self,
        provider_payment_id: str,
        amount: Decimal,
        currency: str,
        *,
        idempotency_key: str,
        reason: str = "",
        reference: str = "",
    ) -> ProviderRefund:
        """Ask the sandbox to refund; it answers pending and settles by webhook."""
        with _mapped_errors():
            refund = gateway.refund_create(
                provider_payment_id, amount, idempotency_key=idempotency_key, reference=reference
            )
        # The API answers pending; the webhook carries the outcome.
        return _to_provider_refund({**gateway.refund_object(refund), "status": "pending"})

    def charge_saved_method(
        self, charge: SavedMethodCharge, *, idempotency_key: str
    ) -> ProviderPayment:
        """Charge a card saved on an earlier checkout; a decline comes back as failed."""
        with _mapped_errors():
            payment = gateway.charge_saved_method(
                idempotency_key=idempotency_key,
                reference=charge.payment_id,
                amount=charge.amount,
                currency=charge.currency,
                payment_method_id=charge.payment_method_id,
                description=charge.description,
            )
        return _to_provider_payment(gateway.payment_object(payment))

    def payments_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderPayment]:
        for obj in self._walk(gateway.payments_list, created_gte, created_lt):
            yield _to_provider_payment(obj)

    def refunds_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderRefund]:
        for obj in self._walk(gateway.refunds_list, created_gte, created_lt):
            yield _to_provider_refund(obj)

    def _walk(self, list_page, created_gte: datetime, created_lt: datetime) -> Iterator[dict]:
        """Every object of a sandbox list, page after page (`starting_after` the last id)."""
        after = ""
        while True:
            with _mapped_errors():
                page = list_page(
                    created_gte=created_gte,
                    created_lt=created_lt,
                    starting_after=after,
                    limit=self.list_page_size,
                )
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1]["id"]

    def webhook_verify(self, body: bytes, headers: Mapping[str, str], source_ip: str) -> dict:
        try:
            return signing.webhook_verify(gateway.webhook_secret(), body, headers)
        except signing.SignatureError as exc:
            raise WebhookVerificationError(f"Bad sandbox signature: {exc}") from None

    def webhook_identify(self, payload: dict) -> tuple[str, str]:
        event = self.webhook_event(payload)  # the payload is the whole event: no fetch
        return event.event_id, event.type

    def webhook_event(self, payload: dict) -> ProviderEvent:
        try:
            event_type = str(payload["type"])
            obj = payload["data"]["object"]
            if event_type.startswith("refund."):
                return ProviderEvent(
                    event_id=str(payload["id"]), type=event_type, refund=_to_provider_refund(obj)
                )
            return ProviderEvent(
                event_id=str(payload["id"]), type=event_type, payment=_to_provider_payment(obj)
            )
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise WebhookVerificationError(f"Malformed sandbox event: {exc!r}") from None


def _to_provider_refund(obj: dict) -> ProviderRefund:
    return ProviderRefund(
        provider_refund_id=obj["id"],
        provider_payment_id=obj["payment"],
        status=obj["status"],
        amount=Decimal(obj["amount"]),
        currency=obj["currency"],
        reference=obj.get("reference", ""),
        created_at=_moment(obj.get("created")),
    )


def _to_provider_payment(obj: dict) -> ProviderPayment:
    method = obj.get("payment_method") or {}
    return ProviderPayment(
        provider_payment_id=obj["id"],
        reference=obj["reference"],
        status=_STATUS[obj["status"]],
        amount=Decimal(obj["amount"]),
        currency=obj["currency"],
        amount_captured=Decimal(obj["amount_captured"]),
        amount_refunded=Decimal(obj["amount_refunded"]),
        payment_method_id=method.get("id", ""),
        payment_method_types=("card",),
        card_brand=method.get("brand", ""),
        card_last4=method.get("last4", ""),
        failure_code=obj.get("failure_code", ""),
        failure_message=obj.get("failure_message", ""),
        created_at=_moment(obj.get("created")),
    )


def _moment(timestamp) -> datetime | None:
    return datetime.fromtimestamp(int(timestamp), tz=UTC) if timestamp is not None else None


class _mapped_errors:
    """Turn the sandbox's refusals into the provider errors every adapter raises."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, gateway.SandboxError):
            raise ProviderDeclined(exc.message, code=exc.code) from None
        return False
