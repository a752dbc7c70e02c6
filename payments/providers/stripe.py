"""
Adapter for Stripe: hosted Checkout Sessions for the buyer, PaymentIntents for everything
that moves money afterwards, refunds, and signed webhooks. The only module that imports
`stripe`; what leaves it are our dataclasses and `ProviderError`s, never SDK objects.

Ids. A Checkout Session (`cs_…`) is what the buyer pays on; its PaymentIntent (`pi_…`) is
the payment. Stripe makes the PaymentIntent only when the buyer first confirms, so a new
payment knows its session (`provider_checkout_id`) and no `provider_payment_id` yet; every
report from here names the PaymentIntent as `provider_payment_id` (or "" when none exists),
so the first webhook or sync fills it in and later ones agree with it.
"""

import functools
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import stripe
from django.conf import settings

from payments import money
from payments.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    ProviderDeclined,
    ProviderError,
    ProviderEvent,
    ProviderPayment,
    ProviderRefund,
    ProviderTransientError,
    SavedMethodCharge,
    WebhookVerificationError,
)

logger = logging.getLogger(__name__)

# Stripe's own default, and what the product promises for `/webhooks/stripe`.
WEBHOOK_TOLERANCE_SECONDS = 300
# Retries inside one call, on connection errors, timeouts, 409 and 5xx; each reuses the
# call's idempotency key, so a retried POST can never take money twice. More patience
# than this belongs to the Celery task around the call.
MAX_NETWORK_RETRIES = 2

# PaymentIntent statuses in our vocabulary. A declined attempt leaves the intent in
# requires_payment_method, which is not final: the buyer can try another card on the same
# Checkout page (see `_intent_status` for the off-session exception).
_INTENT_STATUS = {
    "requires_payment_method": "pending",
    "requires_confirmation": "pending",
    "requires_action": "pending",
    "processing": "pending",
    "requires_capture": "requires_capture",
    "succeeded": "succeeded",
    "canceled": "canceled",
}
_REFUND_STATUS = {
    "pending": "pending",
    "requires_action": "pending",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
# The only refund reasons Stripe accepts; anything else we are told travels as metadata.
_REFUND_REASONS = {"duplicate", "fraudulent", "requested_by_customer"}

# Where Stripe's minor unit is not ISO 4217's (docs.stripe.com/currencies#special-cases):
# ISK is whole krónur but Stripe still counts it in hundredths; MGA has an ISO exponent of
# 2 but Stripe takes whole ariary.
_STRIPE_EXPONENTS = {"ISK": 2, "MGA": 0}

# Marks the PaymentIntents we create for off-session charges: nobody is there to retry a
# declined one, so for them requires_payment_method after an error means failed.
_OFF_SESSION_MARK = "off_session"

# The parse errors a payload or response of the wrong shape raises in the code below.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError)


@functools.lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, timeout: float) -> stripe.StripeClient:
    # One client per configuration, kept: its HTTP client holds pooled connections.
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=MAX_NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


class StripeProvider:
    name = "stripe"
    # Stripe's largest page (`limit` is 1 to 100).
    list_page_size = 100

    @property
    def livemode(self) -> bool:
        """Stripe decides test or live by the key alone; so do we."""
        return settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))

    @property
    def _stripe(self) -> stripe.StripeClient:
        if not settings.STRIPE_SECRET_KEY:
            # Transient: payments wait (and retry) while an operator restores the key.
            raise ProviderTransientError(
                "Stripe is not configured.", code="provider_not_configured"
            )
        return _client(
            settings.STRIPE_SECRET_KEY,
            settings.STRIPE_API_BASE.rstrip("/"),
            float(settings.PROVIDER_TIMEOUT_SECONDS),
        )

    # --- Checkout ---------------------------------------------------------------------

    def checkout_create(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutResult:
        """
        Open a hosted Checkout Session for the payment; the buyer pays there. With `capture`
        off, the card is only authorized (a manual-capture PaymentIntent).
        """
        currency = request.currency.upper()
        metadata = {**request.metadata, "payment_id": request.payment_id}
        intent_data: dict = {"metadata": {"payment_id": request.payment_id}}
        if request.description:
            intent_data["description"] = request.description
        if not request.capture:
            intent_data["capture_method"] = "manual"
        if request.save_payment_method:
            intent_data["setup_future_usage"] = "off_session"
        params: dict = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": _to_stripe_amount(request.amount, currency),
                        "product_data": {
                            "name": request.description or f"Payment {request.payment_id}"
                        },
                    },
                }
            ],
            # Both back to our pay link, which shows whatever Stripe's webhook decides.
            "success_url": request.return_url,
            "cancel_url": request.return_url,
            "client_reference_id": request.payment_id,
            "metadata": metadata,
            "payment_intent_data": intent_data,
            # Converting to the buyer's currency would make Stripe's amount and currency
            # differ from the payment's, which our sync rightly refuses as a mismatch.
            "adaptive_pricing": {"enabled": False},
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        if request.save_payment_method:
            # A saved card is only reusable off-session when attached to a customer.
            params["customer_creation"] = "always"
        with _api():
            session = self._stripe.v1.checkout.sessions.create(
                params, options={"idempotency_key": idempotency_key}
            ).to_dict()
            return CheckoutResult(
                provider_payment_id=_id(session.get("payment_intent")),
                checkout_id=session["id"],
                checkout_url=session["url"],
            )

    # --- Payments ---------------------------------------------------------------------

    def payment_retrieve(self, provider_payment_id: str) -> ProviderPayment:
        """Stripe's current account of a PaymentIntent, or of a Checkout Session (`cs_…`)."""
        if provider_payment_id.startswith("cs_"):
            with _api():
                session = self._stripe.v1.checkout.sessions.retrieve(provider_payment_id).to_dict()
                return _ours(self._payment_from_session(session), provider_payment_id)
        intent_id = _intent_id(provider_payment_id)
        with _api():
            return _payment_from_intent(self._intent_retrieve(intent_id))

    def payment_capture(
        self, provider_payment_id: str, amount: Decimal, *, idempotency_key: str
    ) -> ProviderPayment:
        """
        Capture `amount` of an authorized PaymentIntent; Stripe releases the rest of the
        hold. A capture Stripe refuses (not authorized, too much) is a ProviderDeclined.
        """
        intent_id = _intent_id(provider_payment_id)
        with _api():
            # The protocol passes no currency, and minor units depend on it.
            currency = self._intent_retrieve(intent_id, expand=False)["currency"].upper()
            captured = self._stripe.v1.payment_intents.capture(
                intent_id,
                {
                    "amount_to_capture": _to_stripe_amount(amount, currency),
                    "expand": ["latest_charge"],
                },
                options={"idempotency_key": idempotency_key},
            ).to_dict()
            return _payment_from_intent(captured)

    def payment_cancel(
        self, provider_payment_id: str, *, idempotency_key: str, checkout_id: str = ""
    ) -> ProviderPayment:
        """
        Make sure the payment can no longer take money. While the Checkout Session is open
        that means expiring it (Stripe refuses to cancel a PaymentIntent an open session
        owns, and a session without one has nothing else to cancel); once it is complete,
        it means voiding the authorized PaymentIntent. A session that already expired is
        reported canceled without a call, so a retry after a lost answer is harmless.
        """
        with _api():
            intent_id = provider_payment_id
            if checkout_id:
                session = self._stripe.v1.checkout.sessions.retrieve(checkout_id).to_dict()
                if session["status"] == "open":
                    # A key of its own: should the session complete under us, a later
                    # cancel voids the intent, and one Stripe key must name one request.
                    session = self._stripe.v1.checkout.sessions.expire(
                        checkout_id, options={"idempotency_key": f"{idempotency_key}-expire"}
                    ).to_dict()
                if session["status"] == "expired":
                    return _ours(self._payment_from_session(session), checkout_id)
                intent_id = _id(session.get("payment_intent")) or intent_id
            canceled = self._stripe.v1.payment_intents.cancel(
                _intent_id(intent_id),
                {"expand": ["latest_charge"]},
                options={"idempotency_key": idempotency_key},
            ).to_dict()
            return _payment_from_intent(canceled)

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
        """
        Refund `amount` (all or part of what was captured) of a PaymentIntent. Stripe may
        answer `pending`; the outcome then arrives as a `refund.updated` webhook.
        """
        intent_id = _intent_id(provider_payment_id)
        params: dict = {
            "payment_intent": intent_id,
            "amount": _to_stripe_amount(amount, currency.upper()),
        }
        metadata = {"refund_id": reference} if reference else {}
        if reason in _REFUND_REASONS:
            params["reason"] = reason
        elif reason:
            metadata["reason"] = reason[:500]
        if metadata:
            params["metadata"] = metadata
        with _api():
            refund = self._stripe.v1.refunds.create(
                params, options={"idempotency_key": idempotency_key}
            ).to_dict()
            return _refund_from_object(refund)

    def charge_saved_method(
        self, charge: SavedMethodCharge, *, idempotency_key: str
    ) -> ProviderPayment:
        """
        Charge a saved card with nobody present (renewals). Stripe answers a decline with
        a card error; that comes back as a `failed` payment carrying the decline code, not
        as an exception, because for a renewal a decline is an outcome, not a fault.
        """
        currency = charge.currency.upper()
        params: dict = {
            "amount": _to_stripe_amount(charge.amount, currency),
            "currency": currency.lower(),
            "payment_method": charge.payment_method_id,
            "off_session": True,
            "confirm": True,
            # Confirming server-side with no page to return to: only methods that never
            # redirect the buyer can be used, and Stripe then needs no return_url.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {"payment_id": charge.payment_id, _OFF_SESSION_MARK: "true"},
            "expand": ["latest_charge"],
        }
        if charge.provider_customer_id:
            params["customer"] = charge.provider_customer_id
        if charge.description:
            params["description"] = charge.description
        try:
            with _api(passthrough=(stripe.CardError,)):
                intent = self._stripe.v1.payment_intents.create(
                    params, options={"idempotency_key": idempotency_key}
                ).to_dict()
                return _payment_from_intent(intent)
        except stripe.CardError as exc:
            error = _error_object(exc)
            intent = error.get("payment_intent") or {}
            return ProviderPayment(
                provider_payment_id=_id(intent),
                reference=charge.payment_id,
                status="failed",
                amount=charge.amount,
                currency=currency,
                payment_method_id=charge.payment_method_id,
                provider_customer_id=charge.provider_customer_id,
                failure_code=_decline_code(exc),
                failure_message=exc.user_message or "",
            )

    # --- Lists (reconciliation) -----------------------------------------------------------

    def payments_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderPayment]:
        """
        Every PaymentIntent made in the range, newest first as Stripe lists them, one page
        (`starting_after` the last id) at a time. Our payment id is in its metadata; an
        intent without it (made outside this platform) comes back with no reference.
        """
        for intent in self._walk(self._stripe.v1.payment_intents.list, created_gte, created_lt):
            with _api():  # an object we cannot read is a transient error, as everywhere
                created = _moment(intent["created"])
                payment = replace(_payment_from_intent(intent), created_at=created)
            yield payment

    def refunds_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderRefund]:
        for obj in self._walk(self._stripe.v1.refunds.list, created_gte, created_lt):
            with _api():
                refund = replace(_refund_from_object(obj), created_at=_moment(obj["created"]))
            yield refund

    def _walk(self, list_call, created_gte: datetime, created_lt: datetime) -> Iterator[dict]:
        # Stripe's `created` is whole seconds: round outwards, the caller filters exactly.
        params: dict = {
            "created": {
                "gte": math.floor(created_gte.timestamp()),
                "lt": math.ceil(created_lt.timestamp()),
            },
            "limit": self.list_page_size,
        }
        while True:
            with _api():
                page = list_call(params).to_dict()
                data = page["data"]
                if not isinstance(data, list):
                    raise TypeError("data must be a list")
            yield from data
            if not page.get("has_more") or not data:
                return
            params = {**params, "starting_after": data[-1]["id"]}

    # --- Webhooks ---------------------------------------------------------------------

    def webhook_verify(self, body: bytes, headers: Mapping[str, str], source_ip: str) -> dict:
        # The signature is the proof; Stripe's sending addresses are not needed for it.
        signature = next(
            (value for name, value in headers.items() if name.lower() == "stripe-signature"),
            None,
        )
        try:
            stripe.WebhookSignature.verify_header(
                body,
                signature,
                settings.STRIPE_WEBHOOK_SECRET,
                tolerance=WEBHOOK_TOLERANCE_SECONDS,
            )
        except stripe.SignatureVerificationError as exc:
            raise WebhookVerificationError(f"Bad Stripe signature: {exc.user_message}") from None
        except UnicodeDecodeError:
            raise WebhookVerificationError("Malformed Stripe webhook: not UTF-8.") from None
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookVerificationError(f"Malformed Stripe webhook: {exc}") from None
        if not isinstance(payload, dict):
            raise WebhookVerificationError("Malformed Stripe webhook: not a JSON object.")
        return payload

    def webhook_identify(self, payload: dict) -> tuple[str, str]:
        """
        The event's id and type, with no call to Stripe: this runs while Stripe waits for
        our answer. The objects we will act on are checked for shape here too, so a
        malformed event is refused at once rather than failing later in the inbox.
        """
        try:
            event_id, event_type, obj = _event_parts(payload)
            if obj is not None:
                self._read_event_object(event_type, obj, fetch=False)
            return event_id, event_type
        except _SHAPE_ERRORS as exc:
            raise WebhookVerificationError(f"Malformed Stripe event: {exc!r}") from None

    def webhook_event(self, payload: dict) -> ProviderEvent:
        """
        What a verified Stripe event says about our payments and refunds.

        Checkout Session events fetch the session's PaymentIntent: the event only names it,
        and Stripe's current state of it (card, capture, outcome) is what we want to act
        on, whatever order the events came in. PaymentIntent and refund events carry the
        whole object and are read as they are. Other types come back with neither payment
        nor refund, which the inbox records as ignored.
        """
        try:
            event_id, event_type, obj = _event_parts(payload)
            event = ProviderEvent(event_id=event_id, type=event_type)
            if obj is None:
                return event
            return replace(event, **self._read_event_object(event_type, obj, fetch=True))
        except _SHAPE_ERRORS as exc:
            raise WebhookVerificationError(f"Malformed Stripe event: {exc!r}") from None

    def _read_event_object(self, event_type: str, obj: dict, *, fetch: bool) -> dict:
        """
        The `payment` or `refund` an event's object gives. Without `fetch` (no API calls),
        what would need Stripe is only checked for the fields the fetch relies on.
        """
        if event_type.startswith("checkout.session."):
            _require_strings(obj, "id", "status", "currency")
            return {"payment": self._payment_from_session(obj, event_type)} if fetch else {}
        if event_type.startswith("payment_intent."):
            ours = bool((obj.get("metadata") or {}).get("payment_id"))
            return {"payment": _payment_from_intent(obj) if ours else None}
        if event_type == "charge.refunded":
            _require_strings(obj, "id")
            return {"refund": self._refund_from_charge(obj)} if fetch else {}
        return {"refund": _refund_from_object(obj)}

    # --- Helpers that call Stripe -------------------------------------------------------

    def _intent_retrieve(self, intent_id: str, *, expand: bool = True) -> dict:
        params = {"expand": ["latest_charge"]} if expand else None
        return self._stripe.v1.payment_intents.retrieve(intent_id, params).to_dict()

    def _payment_from_session(self, session: dict, event_type: str = "") -> ProviderPayment | None:
        """
        Our payment as a Checkout Session shows it: its PaymentIntent's state when it has
        one (fetched), otherwise what the session itself says. None when it is not ours.
        """
        reference = _session_reference(session)
        if not reference:
            return None
        expired = session["status"] == "expired"
        intent_id = _id(session.get("payment_intent"))
        failure_code = failure_message = ""
        if intent_id:
            with _api():
                intent = self._intent_retrieve(intent_id)
                payment = replace(_payment_from_intent(intent), reference=str(reference))
                failure_code, failure_message = _failure(intent)
        else:
            currency = session["currency"].upper()
            payment = ProviderPayment(
                provider_payment_id="",
                reference=str(reference),
                status="pending",
                amount=_from_stripe_amount(session["amount_total"], currency),
                currency=currency,
            )
        if payment.status != "pending":
            return payment
        # An intent still waiting for the buyer is over once its page is: the buyer can
        # no longer reach it.
        if expired:
            return replace(
                payment,
                status="canceled",
                failure_code="checkout_expired",
                failure_message="The Checkout Session expired before it was paid.",
            )
        if event_type == "checkout.session.async_payment_failed":
            return replace(
                payment,
                status="failed",
                failure_code=failure_code or "async_payment_failed",
                failure_message=failure_message or "The payment did not go through.",
            )
        if event_type == "checkout.session.completed" and not intent_id:
            return None  # nothing was charged, so nothing for us to act on
        return payment

    def _refund_from_charge(self, charge: dict) -> ProviderRefund | None:
        """
        The refund a `charge.refunded` event is about: the charge lists its refunds only
        on old API versions, so otherwise the newest one is fetched.
        """
        embedded = (charge.get("refunds") or {}).get("data")
        if embedded:
            return _refund_from_object(embedded[0])
        with _api():
            listed = self._stripe.v1.refunds.list({"charge": charge["id"], "limit": 1}).to_dict()
            return _refund_from_object(listed["data"][0]) if listed["data"] else None


# --- Conversions ------------------------------------------------------------------------

# Event types whose object we read; any other type is acknowledged and ignored.
_EVENT_FAMILIES = ("checkout.session.", "payment_intent.", "charge.refunded", "refund.")


def _event_parts(payload: dict) -> tuple[str, str, dict | None]:
    """Id, type and (for the types we act on) the object of a Stripe event."""
    event_id = payload["id"]
    event_type = payload["type"]
    if not isinstance(event_id, str) or not isinstance(event_type, str) or not event_id:
        raise TypeError("id and type must be non-empty strings")
    if not event_type.startswith(_EVENT_FAMILIES):
        return event_id, event_type, None
    obj = payload["data"]["object"]
    if not isinstance(obj, dict):
        raise TypeError("data.object must be an object")
    return event_id, event_type, obj


def _require_strings(obj: dict, *names: str) -> None:
    for name in names:
        if not isinstance(obj[name], str):
            raise TypeError(f"{name} must be a string")


def _session_reference(session: dict) -> str:
    """Our payment id, which we gave the session twice over."""
    reference = session.get("client_reference_id") or (session.get("metadata") or {}).get(
        "payment_id"
    )
    return str(reference or "")


def _id(value) -> str:
    """An object's id, whether Stripe expanded it or not."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _ours(payment: ProviderPayment | None, object_id: str) -> ProviderPayment:
    """`payment`, which a session without our payment id in it cannot give."""
    if payment is None:
        raise ProviderDeclined(
            f"Stripe's {object_id} does not belong to one of our payments.",
            code="resource_missing",
        )
    return payment


def _moment(timestamp) -> datetime:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError("created must be a Unix timestamp")
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _intent_id(value: str) -> str:
    if not value.startswith("pi_"):
        raise ProviderDeclined(
            f"There is no Stripe PaymentIntent to act on (got {value!r}).",
            code="resource_missing",
        )
    return value


def _stripe_exponent(currency: str) -> int:
    return _STRIPE_EXPONENTS.get(currency, money.CURRENCY_EXPONENTS[currency])


def _to_stripe_amount(amount: Decimal, currency: str) -> int:
    """`amount` as the integer Stripe expects; ProviderDeclined if Stripe cannot take it."""
    try:
        exponent = _stripe_exponent(currency)
        minor = money.to_minor_units(amount, currency)
    except (KeyError, ValueError) as exc:
        raise ProviderDeclined(
            f"Cannot send {amount} {currency} to Stripe: {exc}", code="amount_not_supported"
        ) from None
    shift = exponent - money.CURRENCY_EXPONENTS[currency]
    if shift >= 0:
        minor *= 10**shift
    else:
        minor, remainder = divmod(minor, 10**-shift)
        if remainder:
            raise ProviderDeclined(
                f"Stripe charges {currency} in whole units only; {amount:f} is not one.",
                code="amount_not_supported",
            )
    # Card networks settle three-decimal currencies in tens of the minor unit, and Stripe
    # refuses anything else; rounding someone's price is not ours to do.
    if exponent == 3 and minor % 10:
        raise ProviderDeclined(
            f"Stripe takes {currency} amounts in steps of 0.010 only; {amount:f} is not one.",
            code="amount_not_supported",
        )
    return minor


def _from_stripe_amount(value: int, currency: str) -> Decimal:
    shift = _stripe_exponent(currency) - money.CURRENCY_EXPONENTS[currency]
    if shift > 0 and value % 10**shift == 0:
        return money.from_minor_units(value // 10**shift, currency)
    if shift > 0:
        # Finer than the currency allows: kept exact, for the amount check to catch.
        return Decimal(value).scaleb(-_stripe_exponent(currency))
    return money.from_minor_units(value * 10**-shift, currency)


def _payment_from_intent(intent: dict) -> ProviderPayment:
    currency = intent["currency"].upper()
    charge = intent.get("latest_charge")
    charge = charge if isinstance(charge, dict) else {}
    details = charge.get("payment_method_details") or {}
    # Brand and last four only: nothing else about the card is ever read or kept.
    card = details.get("card") or {}
    status = _intent_status(intent)
    failure_code, failure_message = _failure(intent) if status == "failed" else ("", "")
    return ProviderPayment(
        provider_payment_id=intent["id"],
        reference=str((intent.get("metadata") or {}).get("payment_id") or ""),
        status=status,
        amount=_from_stripe_amount(intent["amount"], currency),
        currency=currency,
        amount_captured=_from_stripe_amount(intent.get("amount_received") or 0, currency),
        amount_refunded=_from_stripe_amount(charge.get("amount_refunded") or 0, currency),
        payment_method_id=_id(intent.get("payment_method")),
        payment_method_types=(details["type"],) if details.get("type") else (),
        card_brand=str(card.get("brand") or ""),
        card_last4=str(card.get("last4") or "")[-4:],
        failure_code=failure_code,
        failure_message=failure_message,
        provider_customer_id=_id(intent.get("customer")),
    )


def _failure(intent: dict) -> tuple[str, str]:
    """The code (the decline code when there is one) and message of the last failed attempt."""
    error = intent.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code") or ""
    return str(code), str(error.get("message") or "")


def _intent_status(intent: dict) -> str:
    status = intent["status"]
    off_session = (intent.get("metadata") or {}).get(_OFF_SESSION_MARK) == "true"
    if status == "requires_payment_method" and off_session and intent.get("last_payment_error"):
        return "failed"
    if status not in _INTENT_STATUS:
        # A status newer than this code: wait for one we know rather than guess.
        logger.warning("Unknown PaymentIntent status %r on %s", status, intent.get("id"))
        return "pending"
    return _INTENT_STATUS[status]


def _refund_from_object(refund: dict) -> ProviderRefund:
    currency = refund["currency"].upper()
    return ProviderRefund(
        provider_refund_id=refund["id"],
        provider_payment_id=_id(refund.get("payment_intent")),
        status=_REFUND_STATUS.get(refund["status"], "pending"),
        amount=_from_stripe_amount(refund["amount"], currency),
        currency=currency,
        failure_reason=str(refund.get("failure_reason") or ""),
        reference=str((refund.get("metadata") or {}).get("refund_id") or ""),
    )


# --- Errors ------------------------------------------------------------------------------


def _error_object(exc: stripe.StripeError) -> dict:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error")
    return error if isinstance(error, dict) else {}


def _decline_code(exc: stripe.StripeError) -> str:
    error = _error_object(exc)
    return error.get("decline_code") or exc.code or "card_declined"


def _provider_error(exc: stripe.StripeError) -> ProviderError:
    """
    Stripe's error as ours. Refusals on the merits (a declined card, a request Stripe
    will never accept) are ProviderDeclined; anything that may go through later is
    transient. That includes a rejected API key: it is our configuration, not the
    payment, that is wrong, so payments wait for an operator to fix it rather than fail.
    """
    message = exc.user_message or type(exc).__name__
    if isinstance(exc, stripe.CardError):
        return ProviderDeclined(message, code=_decline_code(exc))
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        logger.error("Stripe refused our API key (%s): %s", type(exc).__name__, message)
        return ProviderTransientError(message, code="provider_authentication_failed")
    if isinstance(exc, stripe.RateLimitError):
        return ProviderTransientError(message, code="rate_limited")
    if isinstance(exc, stripe.APIConnectionError):
        return ProviderTransientError(message, code="provider_unreachable")
    if isinstance(exc, stripe.IdempotencyError):
        return ProviderDeclined(message, code="idempotency_error")
    if isinstance(exc, stripe.InvalidRequestError):
        return ProviderDeclined(message, code=exc.code or "invalid_request")
    status = exc.http_status or 0
    if 400 <= status < 500 and status not in (408, 409):
        return ProviderDeclined(message, code=exc.code or "provider_refused")
    return ProviderTransientError(message, code=exc.code or "provider_error")


class _api:
    """
    Around every Stripe call: its errors become ProviderErrors, and a response of a shape
    we cannot read becomes a transient error instead of a crash. `passthrough` lets the
    caller handle some Stripe errors itself.
    """

    def __init__(self, passthrough: tuple[type[Exception], ...] = ()):
        self.passthrough = passthrough

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, (*self.passthrough, ProviderError)):
            return False
        if isinstance(exc, stripe.StripeError):
            raise _provider_error(exc) from exc
        if isinstance(exc, _SHAPE_ERRORS):
            logger.error("Unreadable answer from Stripe", exc_info=exc)
            raise ProviderTransientError(
                f"Stripe answered with something unexpected: {exc!r}",
                code="provider_bad_response",
            ) from exc
        return False
