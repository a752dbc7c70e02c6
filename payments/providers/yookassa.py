"""
Adapter for YooKassa, through its `yookassa` SDK. The only module that imports it.

The SDK gives us Basic auth, its user agent, JSON encoding, retrying a 202 ("accepted, ask
again") and one exception per error status. Around it, on purpose:

- Requests go through the SDK's `ApiClient` with plain dicts, not through its `Payment` and
  `Refund` models: those pass every amount through `float` (money here never touches a
  float) and raise TypeError on a payment method type the installed SDK does not know yet,
  which would turn a good notification into a failure. Answers are read here, with Decimal.
- The SDK sets no HTTP timeout; `_BoundedApiClient` bounds every request.
- The SDK turns a network error into an AttributeError (its error handler reads
  `e.response`, which is None); `_mapped_errors` turns every failure into a ProviderError.
- YooKassa does not sign notifications. `webhook_verify` believes only its published
  addresses, and `webhook_event` fetches the object from the API and reports that, never
  the posted body: an address can be spoofed upstream of us, the API answer cannot.
"""

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from yookassa import Configuration
from yookassa.client import ApiClient
from yookassa.domain.common import HttpVerb
from yookassa.domain.exceptions import (
    ApiError,
    BadRequestError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    UnauthorizedError,
)

from payments import money
from payments.network import address_in
from payments.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    ProviderDeclined,
    ProviderError,
    ProviderEvent,
    ProviderPayment,
    ProviderRefund,
    ProviderTransientError,
    Receipt,
    SavedMethodCharge,
    WebhookVerificationError,
)

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.yookassa.ru/v3"

# YooKassa's length limits on free text.
DESCRIPTION_LIMIT = 128
REFUND_DESCRIPTION_LIMIT = 250

# The SDK's own number of repeats for a 202 answer.
PROCESSING_RETRIES = 3

# After a partial capture YooKassa reports the captured sum as the payment's `amount`, and
# has no field for what was authorized. We keep the amount we asked for in the payment's
# metadata (fixed at creation), so that a later fetch still matches our payment.
REQUESTED_AMOUNT_KEY = "requested_amount"

_STATUS = {
    "pending": "pending",
    "waiting_for_capture": "requires_capture",
    "succeeded": "succeeded",
    "canceled": "canceled",
}

# A canceled YooKassa payment is "canceled" for us only when the merchant's side ended it:
# voided through the API, or an authorization left to lapse uncaptured. Every other reason
# (a bank's or YooKassa's decline, 3-D Secure failure, the buyer never confirming in time)
# means the buyer tried to pay and could not: a failure, with the reason as failure_code.
_MERCHANT_REASONS = {"canceled_by_merchant", "expired_on_capture"}

_REASON_MESSAGES = {
    "3d_secure_failed": "3-D Secure authentication failed.",
    "call_issuer": "The issuer declined the payment; the buyer should contact it.",
    "canceled_by_merchant": "The payment was canceled by the merchant.",
    "card_expired": "The card has expired.",
    "country_forbidden": "Cards from this country are not accepted.",
    "expired_on_capture": "The authorization expired before it was captured.",
    "expired_on_confirmation": "The buyer did not complete the payment in time.",
    "fraud_suspected": "The payment was blocked as suspected fraud.",
    "general_decline": "The payment was declined.",
    "insufficient_funds": "Insufficient funds.",
    "invalid_card_number": "The card number is invalid.",
    "invalid_csc": "The card security code is invalid.",
    "issuer_unavailable": "The card issuer could not be reached.",
    "payment_method_limit_exceeded": "The payment method's limit is exceeded.",
    "payment_method_restricted": "The payment method is restricted.",
    "permission_revoked": "The buyer revoked the permission to charge this payment method.",
}

# Our name for YooKassa's payment method types, where the rest of the code has one.
_METHOD_TYPES = {"bank_card": "card"}

# Refused on the merits: repeating the same request gets the same answer.
_DECLINED_ERRORS = (BadRequestError, ForbiddenError, NotFoundError, GoneError)
_DECLINED_CODES = {"invalid_request", "forbidden", "not_found"}

# A notification's object id goes into an API path: anything but a plain id is not
# YooKassa's, and must not be able to steer the request elsewhere.
_OBJECT_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}")
_EVENT = re.compile(r"[a-z_]{1,40}\.[a-z_]{1,58}")


class YooKassaProvider:
    name = "yookassa"
    # YooKassa's largest page (`limit` is 1 to 100).
    list_page_size = 100

    def checkout_create(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutResult:
        """
        Create a YooKassa payment confirmed by redirect: the buyer pays on YooKassa's page
        and comes back to `request.return_url`. With `capture` false the money is only
        held. The same idempotency key returns the same payment (YooKassa keeps keys 24 h).
        """
        amount = money.amount_format(request.amount, request.currency)
        body = {
            "amount": {"value": amount, "currency": request.currency},
            "capture": request.capture,
            "confirmation": {"type": "redirect", "return_url": request.return_url},
            "save_payment_method": request.save_payment_method,
            "metadata": {**request.metadata, REQUESTED_AMOUNT_KEY: amount},
        }
        if request.description:
            body["description"] = request.description[:DESCRIPTION_LIMIT]
        if request.receipt is not None:
            body["receipt"] = _receipt_body(
                request.receipt, request.currency, fallback_email=request.customer_email
            )
        obj = _call(HttpVerb.POST, "/payments", body=body, idempotency_key=idempotency_key)
        payment = _to_provider_payment(obj)
        if payment.status in ("failed", "canceled"):
            # Refused at creation (a fraud check, a closed shop): no page to send anyone to.
            raise ProviderDeclined(
                payment.failure_message or "YooKassa canceled the payment at once.",
                code=payment.failure_code or "payment_canceled",
            )
        url = (obj.get("confirmation") or {}).get("confirmation_url")
        if not isinstance(url, str) or not url:
            raise ProviderTransientError(
                "YooKassa answered without a confirmation URL.", code="provider_bad_response"
            )
        return CheckoutResult(
            provider_payment_id=payment.provider_payment_id,
            checkout_id=payment.provider_payment_id,
            checkout_url=url,
        )

    def payment_retrieve(self, provider_payment_id: str) -> ProviderPayment:
        return _to_provider_payment(_call(HttpVerb.GET, _payment_path(provider_payment_id)))

    def payment_capture(
        self, provider_payment_id: str, amount: Decimal, *, idempotency_key: str
    ) -> ProviderPayment:
        """
        Capture `amount` of a held payment; YooKassa releases the rest of the hold. The
        payment is read first because the capture names a currency and only YooKassa's
        record of the payment has it here.
        """
        path = _payment_path(provider_payment_id)
        currency = _to_provider_payment(_call(HttpVerb.GET, path)).currency
        body = {"amount": {"value": money.amount_format(amount, currency), "currency": currency}}
        obj = _call(HttpVerb.POST, f"{path}/capture", body=body, idempotency_key=idempotency_key)
        return _to_provider_payment(obj)

    def payment_cancel(
        self, provider_payment_id: str, *, idempotency_key: str, checkout_id: str = ""
    ) -> ProviderPayment:
        """
        Release a held (waiting_for_capture) payment. YooKassa cancels nothing else: a
        pending payment cannot be canceled through the API (it expires), and asking is a
        ProviderDeclined. YooKassa's checkout is the payment itself: `checkout_id` adds
        nothing.
        """
        path = f"{_payment_path(provider_payment_id)}/cancel"
        return _to_provider_payment(_call(HttpVerb.POST, path, idempotency_key=idempotency_key))

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
        Return `amount` of a succeeded payment to the buyer. YooKassa refunds carry no
        metadata, so `reference` is not sent; its notifications name the refund by its id.
        """
        body = {
            "payment_id": provider_payment_id,
            "amount": {"value": money.amount_format(amount, currency), "currency": currency},
        }
        if reason:
            body["description"] = reason[:REFUND_DESCRIPTION_LIMIT]
        obj = _call(HttpVerb.POST, "/refunds", body=body, idempotency_key=idempotency_key)
        return _to_provider_refund(obj)

    def charge_saved_method(
        self, charge: SavedMethodCharge, *, idempotency_key: str
    ) -> ProviderPayment:
        """
        Charge a saved payment method without the buyer (renewals), captured at once.
        A decline comes back as a canceled payment with a reason and is returned as
        failed, with the reason as failure_code; only a bad request or an outage raises.
        """
        amount = money.amount_format(charge.amount, charge.currency)
        body = {
            "amount": {"value": amount, "currency": charge.currency},
            "capture": True,
            "payment_method_id": charge.payment_method_id,
            "metadata": {"payment_id": charge.payment_id, REQUESTED_AMOUNT_KEY: amount},
        }
        if charge.description:
            body["description"] = charge.description[:DESCRIPTION_LIMIT]
        if charge.receipt is not None:
            body["receipt"] = _receipt_body(charge.receipt, charge.currency, fallback_email="")
        obj = _call(HttpVerb.POST, "/payments", body=body, idempotency_key=idempotency_key)
        payment = _to_provider_payment(obj)
        if payment.status == "canceled":
            # Nobody on our side can have canceled a charge it is only now creating: a decline.
            payment = replace(
                payment, status="failed", failure_code=payment.failure_code or "payment_canceled"
            )
        return payment

    def payments_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderPayment]:
        """
        Every payment made in the range, newest first as YooKassa lists them, page by page
        (`cursor` = the previous page's `next_cursor`). Our payment id is in its metadata.
        """
        for obj in self._walk("/payments", created_gte, created_lt):
            yield replace(_to_provider_payment(obj), created_at=_created(obj))

    def refunds_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderRefund]:
        """Every refund made in the range; YooKassa keeps no reference of ours on them."""
        for obj in self._walk("/refunds", created_gte, created_lt):
            yield replace(_to_provider_refund(obj), created_at=_created(obj))

    def _walk(self, path: str, created_gte: datetime, created_lt: datetime) -> Iterator[dict]:
        params = {
            "created_at.gte": _iso(created_gte),
            "created_at.lt": _iso(created_lt),
            "limit": self.list_page_size,
        }
        while True:
            page = _call(HttpVerb.GET, path, params=params)
            items = page.get("items")
            cursor = page.get("next_cursor")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ProviderTransientError(
                    "YooKassa answered a list without items.", code="provider_bad_response"
                )
            yield from items
            if not cursor or not items:
                return
            params = {**params, "cursor": str(cursor)}

    def webhook_verify(self, body: bytes, headers: Mapping[str, str], source_ip: str) -> dict:
        if not address_in(source_ip, settings.YOOKASSA_WEBHOOK_ALLOWED_IPS):
            raise WebhookVerificationError(
                f"{source_ip or 'An unknown address'} is not a YooKassa notification address."
            )
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise WebhookVerificationError("The notification is not valid JSON.") from None
        _notification_parts(payload)
        return payload

    def webhook_identify(self, payload: dict) -> tuple[str, str]:
        event, object_id = _notification_parts(payload)
        return f"{event}:{object_id}", event

    def webhook_event(self, payload: dict) -> ProviderEvent:
        """
        The notification's event, with the object as the API reports it now: the posted
        body only says which object to fetch. A notification names one status change of
        one object, which happens once, so `event:object id` identifies it.
        """
        event_id, event = self.webhook_identify(payload)
        object_id = payload["object"]["id"]
        if event.startswith("payment."):
            obj = _fetch_notified(_payment_path(object_id), object_id)
            return ProviderEvent(event_id=event_id, type=event, payment=_to_provider_payment(obj))
        if event.startswith("refund."):
            obj = _fetch_notified(_refund_path(object_id), object_id)
            return ProviderEvent(event_id=event_id, type=event, refund=_to_provider_refund(obj))
        # Other objects (payouts, deals, payment methods) are not ours to act on.
        return ProviderEvent(event_id=event_id, type=event)


# --- The SDK client -----------------------------------------------------------------------


class _TimeoutAdapter(HTTPAdapter):
    """An HTTPAdapter that gives every request a connect and read timeout."""

    def __init__(self, timeout: float, **kwargs):
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if timeout is None:
            timeout = (self._timeout, self._timeout)
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )


class _BoundedApiClient(ApiClient):
    """
    The SDK's client with every request bounded by PROVIDER_TIMEOUT_SECONDS.

    The SDK calls `requests.Session().request(...)` without a timeout, so a silent peer
    would hold a Celery worker, or a payment row locked during a capture, forever. Its
    `get_session` is the one hook it offers, and a subclass uses it without patching the
    SDK for anyone else. The timeout applies to connecting and to each read (a server
    trickling bytes slower than that could stretch a call; YooKassa does not).

    The session keeps the SDK's repeats of a 202 (YooKassa's "accepted, ask again with the
    same key") but, unlike the SDK, never repeats after a connection or read error: whether
    a POST that timed out took effect is unknown, and the caller (a Celery task with
    backoff, or an API client) decides when to try again. Backoff between 202 repeats is
    capped at half the timeout. Mounted for http:// as well as https://, so tests against
    a local fake go through exactly the production path.
    """

    def __init__(self, *, shop_id: str, secret_key: str, api_url: str, timeout: float):
        super().__init__()
        # The constructor copied the global Configuration; pin this call's own values, so
        # nothing another thread does to the global can reach a request in flight.
        self.endpoint = api_url
        self.shop_id = shop_id
        self.shop_password = secret_key
        self.auth_token = None
        self.request_timeout = timeout

    def get_session(self) -> requests.Session:
        retries = Retry(
            total=PROCESSING_RETRIES,
            connect=0,
            read=False,
            other=0,
            status=PROCESSING_RETRIES,
            status_forcelist=[202],
            allowed_methods=["POST"],
            backoff_factor=self.request_timeout / 4,
            backoff_max=self.request_timeout / 2,
            respect_retry_after_header=False,
            # The last 202 reaches the SDK, which raises ResponseProcessingError: transient.
            raise_on_status=False,
        )
        adapter = _TimeoutAdapter(self.request_timeout, max_retries=retries)
        session = requests.Session()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session


def _client() -> _BoundedApiClient:
    """The one place the SDK is configured, from settings, for one call."""
    shop_id = settings.YOOKASSA_SHOP_ID
    secret_key = settings.YOOKASSA_SECRET_KEY
    if not (shop_id and secret_key):
        raise ProviderTransientError(
            "YooKassa credentials are not configured.", code="provider_not_configured"
        )
    api_url = (settings.YOOKASSA_API_URL or DEFAULT_API_URL).rstrip("/")
    # `Configuration` is class-level state shared by every thread, and ApiClient() refuses
    # to start unless it holds credentials. Every thread writes the same values, read from
    # settings that do not change while the process runs, so interleaved writes can only
    # ever leave it holding those values; the client then pins its own copy anyway. No
    # logger is configured: the SDK would log the Authorization header.
    Configuration.configure(shop_id, secret_key, api_url=api_url)
    return _BoundedApiClient(
        shop_id=shop_id,
        secret_key=secret_key,
        api_url=api_url,
        timeout=float(settings.PROVIDER_TIMEOUT_SECONDS),
    )


def _call(
    method: str,
    path: str,
    *,
    body: dict | None = None,
    idempotency_key: str = "",
    params: dict | None = None,
) -> dict:
    headers = None
    if method == HttpVerb.POST:
        if not idempotency_key:
            raise ValueError("Every YooKassa POST needs an idempotency key.")
        headers = {"Idempotence-Key": idempotency_key}
    with _mapped_errors():
        answer = _client().request(method, path, params, headers, body)
    if not isinstance(answer, dict):
        raise ProviderTransientError(
            "YooKassa answered with something other than an object.", code="provider_bad_response"
        )
    return answer


def _fetch_notified(path: str, object_id: str) -> dict:
    try:
        return _call(HttpVerb.GET, path)
    except ProviderDeclined as exc:
        if exc.code == "not_found":
            # The API has never heard of it: the notification was not YooKassa's.
            raise WebhookVerificationError(f"YooKassa has no object {object_id}.") from None
        raise


def _payment_path(provider_payment_id: str) -> str:
    return f"/payments/{quote(provider_payment_id, safe='')}"


def _refund_path(provider_refund_id: str) -> str:
    return f"/refunds/{quote(provider_refund_id, safe='')}"


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Whatever the SDK or the network raises leaves as a ProviderError."""
    try:
        yield
    except ProviderError:
        raise
    except ApiError as exc:
        raise _from_api_error(exc) from exc
    except Exception as exc:
        raise _from_failure(exc) from exc


def _from_api_error(exc: ApiError) -> ProviderError:
    content = exc.content if isinstance(exc.content, dict) else {}
    code = str(content.get("code") or "")
    message = f"YooKassa: {content.get('description') or 'the request failed.'}"
    if content.get("parameter"):
        message += f" (parameter: {content['parameter']})"
    # The SDK raises a bare ApiError for statuses it has no class for (502, 503, 409 ...);
    # only its body's code says whether it was a refusal.
    if isinstance(exc, UnauthorizedError) or code == "invalid_credentials":
        # Our configuration is wrong, not the payment: keep payments waiting (the sweep
        # retries until the deadline) and make noise, instead of failing every one.
        logger.error("YooKassa refused our credentials: check YOOKASSA_SHOP_ID/SECRET_KEY")
        return ProviderTransientError(message, code="provider_authentication_failed")
    if isinstance(exc, _DECLINED_ERRORS) or (type(exc) is ApiError and code in _DECLINED_CODES):
        return ProviderDeclined(message, code=code or "provider_declined")
    # 429, 500, a 202 still unprocessed after the repeats, anything unknown: the same
    # request with the same idempotency key may well work later.
    return ProviderTransientError(message, code=code or "provider_unavailable")


def _from_failure(exc: Exception) -> ProviderTransientError:
    # The SDK's handler for request errors reads `e.response` (None for a network error),
    # so what reaches us is an AttributeError whose context is the real failure.
    for error in _chain(exc):
        if isinstance(error, requests.Timeout):
            return ProviderTransientError(
                f"YooKassa did not answer in time: {error}", code="provider_timeout"
            )
        if isinstance(error, requests.ConnectionError):
            return ProviderTransientError(
                f"YooKassa could not be reached: {error}", code="provider_unreachable"
            )
        if isinstance(error, requests.RequestException):
            # e.g. a body that is not JSON, from a proxy in front of YooKassa.
            return ProviderTransientError(
                f"YooKassa's answer could not be read: {error}", code="provider_bad_response"
            )
    # Unknown: whether the request took effect is unknown too, and repeating it with the
    # same idempotency key is safe. Logged in full, since it may be a bug.
    logger.exception("Unexpected failure calling YooKassa")
    return ProviderTransientError(
        f"Unexpected failure calling YooKassa: {type(exc).__name__}: {exc}", code="provider_error"
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


# --- Our dataclasses to YooKassa's JSON and back -------------------------------------------


def _receipt_body(receipt: Receipt, currency: str, *, fallback_email: str) -> dict:
    customer = {}
    email = receipt.customer_email or fallback_email
    if email:
        customer["email"] = email
    if receipt.customer_phone:
        customer["phone"] = receipt.customer_phone
    if not customer:
        # YooKassa would refuse it too, after a round trip; the fiscal receipt goes to the
        # buyer, so 54-FZ needs somewhere to send it.
        raise ProviderDeclined(
            "A fiscal receipt needs the customer's email or phone.",
            code="receipt_customer_missing",
        )
    body = {
        "customer": customer,
        "items": [
            {
                "description": item.description[:DESCRIPTION_LIMIT],
                "quantity": _quantity(item.quantity),
                "amount": {
                    "value": money.amount_format(item.amount, currency),
                    "currency": currency,
                },
                "vat_code": item.vat_code,
                "payment_subject": item.payment_subject,
                "payment_mode": item.payment_mode,
            }
            for item in receipt.items
        ],
    }
    if receipt.tax_system_code is not None:
        body["tax_system_code"] = receipt.tax_system_code
    return body


def _quantity(quantity: Decimal) -> str:
    """A decimal string with at least two places ("1.00", "0.375"), as YooKassa shows them."""
    whole, _, fraction = f"{quantity.normalize():f}".partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _to_provider_payment(obj: Mapping) -> ProviderPayment:
    try:
        status = obj["status"]
        ours = _STATUS[status]
        amount, currency = _amount(obj["amount"])
        metadata = obj.get("metadata") or {}
        requested = metadata.get(REQUESTED_AMOUNT_KEY)
        details = obj.get("cancellation_details") or {}
        reason = str(details.get("reason") or "")
        failure_code = failure_message = ""
        if status == "canceled":
            failure_code = reason
            failure_message = _REASON_MESSAGES.get(reason) or (
                f"Canceled by {details.get('party') or 'YooKassa'}"
                + (f": {reason}." if reason else ".")
            )
            if details and reason not in _MERCHANT_REASONS and details.get("party") != "merchant":
                ours = "failed"
        method = obj.get("payment_method") or {}
        card = method.get("card") or {}
        last4 = str(card.get("last4") or "")
        refunded = obj.get("refunded_amount")
        return ProviderPayment(
            provider_payment_id=_text(obj["id"]),
            reference=str(metadata.get("payment_id") or ""),
            status=ours,
            amount=_decimal(requested) if requested else amount,
            currency=currency,
            amount_captured=amount if status == "succeeded" else Decimal(0),
            amount_refunded=_amount(refunded)[0] if refunded else Decimal(0),
            # Only a saved method can be charged again; an unsaved one's id is useless.
            payment_method_id=str(method.get("id") or "") if method.get("saved") is True else "",
            payment_method_types=(
                (_METHOD_TYPES.get(method["type"], method["type"]),) if method.get("type") else ()
            ),
            card_brand=str(card.get("card_type") or "").lower()[:20],
            # The last four digits and the brand only: nothing else of a card is kept.
            card_last4=last4 if re.fullmatch(r"[0-9]{4}", last4) else "",
            failure_code=failure_code,
            failure_message=failure_message,
        )
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise ProviderTransientError(
            f"YooKassa sent a payment we cannot read: {exc!r}", code="provider_bad_response"
        ) from None


_REFUND_STATUS = {"pending": "pending", "succeeded": "succeeded", "canceled": "failed"}


def _to_provider_refund(obj: Mapping) -> ProviderRefund:
    try:
        amount, currency = _amount(obj["amount"])
        details = obj.get("cancellation_details") or {}
        return ProviderRefund(
            provider_refund_id=_text(obj["id"]),
            provider_payment_id=_text(obj["payment_id"]),
            # YooKassa cancels a refund only when it cannot make it: a failure to us.
            status=_REFUND_STATUS[obj["status"]],
            amount=amount,
            currency=currency,
            failure_reason=str(details.get("reason") or ""),
        )
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise ProviderTransientError(
            f"YooKassa sent a refund we cannot read: {exc!r}", code="provider_bad_response"
        ) from None


def _iso(moment: datetime) -> str:
    """A time as YooKassa writes them: UTC, milliseconds, `Z` (2018-07-18T10:51:18.139Z)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _created(obj: Mapping) -> datetime:
    try:
        moment = datetime.fromisoformat(_text(obj["created_at"]))
        if moment.tzinfo is None:
            raise ValueError("created_at has no time zone")
    except (KeyError, ValueError) as exc:
        raise ProviderTransientError(
            f"YooKassa sent an object we cannot read: {exc!r}", code="provider_bad_response"
        ) from None
    return moment


def _amount(obj: Mapping) -> tuple[Decimal, str]:
    return _decimal(obj["value"]), _text(obj["currency"]).upper()


def _decimal(value) -> Decimal:
    # Only strings: a JSON number has been through a float on the way.
    if not isinstance(value, str):
        raise ValueError(f"amount {value!r} is not a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"amount {value!r} is not a decimal string") from None
    if not amount.is_finite():
        raise ValueError(f"amount {value!r} is not finite")
    return amount


def _text(value) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _notification_parts(payload) -> tuple[str, str]:
    """The event and object id of a well-formed notification; WebhookVerificationError if not."""
    if not isinstance(payload, dict) or payload.get("type") != "notification":
        raise WebhookVerificationError("Not a YooKassa notification.")
    event = payload.get("event")
    obj = payload.get("object")
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(event, str) or not _EVENT.fullmatch(event):
        raise WebhookVerificationError("The notification has no valid event.")
    if not isinstance(object_id, str) or not _OBJECT_ID.fullmatch(object_id):
        raise WebhookVerificationError("The notification has no valid object id.")
    return event, object_id
