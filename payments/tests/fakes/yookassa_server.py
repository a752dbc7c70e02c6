"""
A fake YooKassa API (v3) on 127.0.0.1, for contract tests through the real `yookassa` SDK.

It speaks the documented wire format: HTTP Basic auth with the shop id and secret key
(401 otherwise), an `Idempotence-Key` on every POST (a repeat with the same key and body
gets the first answer again; the same key with another body is a 400), JSON bodies, and
YooKassa's error shape `{"type": "error", "id", "code", "description", "parameter"?}`.

Lists (`GET /payments`, `GET /refunds`) answer `{"type": "list", "items", "next_cursor"}`,
newest first, filtered by `created_at.gte|gt|lte|lt` (ISO 8601), `limit` 1 to 100 (default
10) and an opaque `cursor` (the previous page's `next_cursor`), as YooKassa documents them.

Every request is recorded (`requests`) before anything else happens to it. Tests play the
buyer and the banks through `pay`, `cancel_with` and `decline_saved_method`, and inject
failures with `queue_error`, `queue_response` (served to the next requests, in order) and
`delay_seconds` (how long every answer waits; stopping the server cuts the wait short).
"""

import base64
import copy
import json
import re
import sys
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    429: "too_many_requests",
    500: "internal_server_error",
}
_ERROR_DESCRIPTIONS = {
    400: "Request is invalid.",
    401: "Authentication by given credentials failed",
    403: "The operation is forbidden.",
    404: "Incorrect payment_id. Payment doesn't exist or access denied.",
    429: "Too many requests.",
    500: "Internal server error. Repeat the request with the same Idempotence-Key later.",
}
# Who declines for which reason, as YooKassa reports it.
_REASON_PARTY = {
    "canceled_by_merchant": "merchant",
    "expired_on_confirmation": "yoo_money",
    "expired_on_capture": "yoo_money",
    "fraud_suspected": "yoo_money",
    "permission_revoked": "yoo_money",
}
_AMOUNT_VALUE = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")
_QUANTITY = re.compile(r"[0-9]+(?:\.[0-9]{1,3})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_UNPARSABLE = object()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict  # names in lower case
    json: object  # the parsed body; None without one
    body: bytes
    query: dict = field(default_factory=dict)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def error_body(
    status: int, code: str | None = None, description: str | None = None, parameter=None
) -> dict:
    body = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code or ERROR_CODES.get(status, "internal_server_error"),
        "description": description or _ERROR_DESCRIPTIONS.get(status, "Error."),
    }
    if parameter:
        body["parameter"] = parameter
    return body


class _Refusal(Exception):
    def __init__(self, status: int, description: str, *, parameter: str | None = None):
        super().__init__(description)
        self.status = status
        self.body = error_body(status, description=description, parameter=parameter)


def _invalid(description: str, parameter: str | None = None) -> _Refusal:
    return _Refusal(400, description, parameter=parameter)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops simultaneous connects, which the client
    # then sees as a connect timeout; concurrency tests open more than that at once.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that gave up (the timeout tests) is expected; anything else is shown.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeYooKassa:
    shop_id = "506751"
    secret_key = "test_fake-secret-key"

    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.payments: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.saved_methods: dict[str, dict] = {}
        self.delay_seconds = 0.0
        self._capture: dict[str, bool] = {}
        self._save: dict[str, bool] = {}
        self._declines: dict[str, str] = {}
        self._idempotent: dict[str, tuple] = {}
        self._queued: deque = deque()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake._handle(self)

            do_POST = do_GET

            def log_message(self, format, *args):
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # --- Lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeYooKassa":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v3"

    # --- What tests look at ------------------------------------------------------------------

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def payment(self, payment_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self.payments[payment_id])

    # --- The buyer and the banks -------------------------------------------------------------

    def pay(self, payment_id: str, *, card_type: str = "Visa", last4: str = "4444") -> dict:
        """The buyer pays on YooKassa's page: held, or succeeded when the payment captures."""
        with self._lock:
            payment = self.payments[payment_id]
            assert payment["status"] == "pending", payment["status"]
            method = self._card(card_type, last4, saved=self._save[payment_id])
            if method["saved"]:
                self.saved_methods[method["id"]] = copy.deepcopy(method)
            payment["payment_method"] = method
            payment["paid"] = True
            if self._capture[payment_id]:
                self._succeed(payment)
            else:
                payment["status"] = "waiting_for_capture"
                payment["expires_at"] = "2099-01-01T00:00:00.000Z"
            return copy.deepcopy(payment)

    def cancel_with(self, payment_id: str, reason: str, *, party: str | None = None) -> dict:
        with self._lock:
            payment = self.payments[payment_id]
            self._cancel(payment, reason, party)
            return copy.deepcopy(payment)

    def saved_method(self, *, card_type: str = "Visa", last4: str = "4444") -> str:
        """A card saved by an earlier payment; returns its payment method id."""
        with self._lock:
            method = self._card(card_type, last4, saved=True)
            self.saved_methods[method["id"]] = method
            return method["id"]

    def decline_saved_method(self, method_id: str, reason: str) -> None:
        """From now on, charging this saved method is declined with `reason`."""
        with self._lock:
            self._declines[method_id] = reason

    # --- Failure injection -------------------------------------------------------------------

    def queue_error(self, status: int, *, code=None, description=None, parameter=None) -> None:
        """The next unanswered request gets this documented error instead of its answer."""
        self.queue_response(status, error_body(status, code, description, parameter))

    def queue_response(
        self, status: int, body, *, content_type: str = "application/json; charset=utf-8"
    ) -> None:
        """The next unanswered request gets exactly this (a dict is sent as JSON)."""
        with self._lock:
            self._queued.append((status, body, content_type))

    # --- Serving -----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = _UNPARSABLE
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            json=parsed,
            body=raw,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        )
        with self._lock:
            self.requests.append(request)
            canned = self._queued.popleft() if self._queued else None
            delay = self.delay_seconds
        if delay:
            self._stopping.wait(delay)
        if canned is not None:
            status, body, content_type = canned
        else:
            status, body = self._answer(request)
            content_type = "application/json; charset=utf-8"
        if isinstance(body, dict | list):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except ConnectionError:
            pass  # the client stopped waiting

    def _answer(self, request: RecordedRequest) -> tuple[int, dict]:
        credentials = base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        if request.header("authorization") != f"Basic {credentials}":
            return 401, error_body(401)
        with self._lock:
            key = None
            if request.method == "POST":
                key = request.header("idempotence-key")
                if not key or len(key) > 64:
                    return 400, error_body(
                        400,
                        description="Idempotence-Key header is missing or too long.",
                        parameter="Idempotence-Key",
                    )
                seen = self._idempotent.get(key)
                if seen is not None:
                    fingerprint, status, body = seen
                    if fingerprint != (request.path, request.json):
                        return 400, error_body(
                            400,
                            description="Idempotence key duplicated with other parameters.",
                            parameter="Idempotence-Key",
                        )
                    return status, copy.deepcopy(body)
            try:
                if request.json is _UNPARSABLE:
                    raise _invalid("The request body is not valid JSON.")
                status, body = 200, self._route(request)
            except _Refusal as refusal:
                status, body = refusal.status, refusal.body
            if key is not None:
                self._idempotent[key] = ((request.path, request.json), status, body)
            return status, copy.deepcopy(body)

    def _route(self, request: RecordedRequest) -> dict:
        body = request.json if request.json is not None else {}
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object.")
        if request.method == "GET" and request.path in ("/v3/payments", "/v3/refunds"):
            store = self.payments if request.path == "/v3/payments" else self.refunds
            return self._list(store, request.query)
        routes = [
            ("POST", r"/v3/payments", self._payment_create),
            ("GET", r"/v3/payments/([^/]+)", self._payment_get),
            ("POST", r"/v3/payments/([^/]+)/capture", self._payment_capture),
            ("POST", r"/v3/payments/([^/]+)/cancel", self._payment_cancel),
            ("POST", r"/v3/refunds", self._refund_create),
            ("GET", r"/v3/refunds/([^/]+)", self._refund_get),
        ]
        for method, pattern, view in routes:
            match = re.fullmatch(pattern, request.path)
            if match and method == request.method:
                return view(*match.groups(), body=body)
        raise _Refusal(404, f"No such endpoint: {request.method} {request.path}.")

    # --- Endpoints ---------------------------------------------------------------------------

    def _payment_create(self, *, body: dict) -> dict:
        amount = _amount(body.get("amount"), "amount")
        capture = body.get("capture", False)
        if not isinstance(capture, bool):
            raise _invalid("capture must be a boolean.", "capture")
        save = body.get("save_payment_method", False)
        if not isinstance(save, bool):
            raise _invalid("save_payment_method must be a boolean.", "save_payment_method")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 128):
            raise _invalid("description must be a string of at most 128 characters.", "description")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or len(metadata) > 16 or not all(
            isinstance(k, str) and len(k) <= 32 and isinstance(v, str) and len(v) <= 512
            for k, v in metadata.items()
        ):  # fmt: skip
            raise _invalid("metadata must map at most 16 keys to strings.", "metadata")
        if "receipt" in body:
            _check_receipt(body["receipt"], amount)
        payment_id = str(uuid.uuid4())
        payment = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": amount,
            "created_at": _now(),
            "metadata": metadata,
            "recipient": {"account_id": self.shop_id, "gateway_id": "2081337"},
            "refundable": False,
            "test": True,
        }
        if description is not None:
            payment["description"] = description
        if "receipt" in body:
            payment["receipt_registration"] = "pending"
        if "payment_method_id" in body:
            method = self.saved_methods.get(body["payment_method_id"])
            if method is None:
                raise _invalid("Saved payment method not found.", "payment_method_id")
            payment["payment_method"] = copy.deepcopy(method)
            reason = self._declines.get(method["id"])
            if reason:
                self._cancel(payment, reason, None)
            elif capture:
                payment["paid"] = True
                self._succeed(payment)
            else:
                payment["paid"] = True
                payment["status"] = "waiting_for_capture"
        else:
            confirmation = body.get("confirmation")
            if (
                not isinstance(confirmation, dict)
                or confirmation.get("type") != "redirect"
                or not isinstance(confirmation.get("return_url"), str)
            ):
                raise _invalid(
                    "A redirect confirmation with a return_url is required.", "confirmation"
                )
            payment["confirmation"] = {
                "type": "redirect",
                "return_url": confirmation["return_url"],
                "confirmation_url": (
                    f"https://yoomoney.ru/checkout/payments/v2/contract?orderId={payment_id}"
                ),
            }
        self.payments[payment_id] = payment
        self._capture[payment_id] = capture
        self._save[payment_id] = save
        return payment

    def _payment_get(self, payment_id: str, *, body: dict) -> dict:
        return self._find_payment(payment_id)

    def _payment_capture(self, payment_id: str, *, body: dict) -> dict:
        payment = self._find_payment(payment_id)
        if payment["status"] != "waiting_for_capture":
            raise _invalid(f"Payment in status {payment['status']} cannot be captured.")
        if "amount" in body:
            amount = _amount(body["amount"], "amount")
            if amount["currency"] != payment["amount"]["currency"]:
                raise _invalid("The currency differs from the payment's.", "amount.currency")
            if Decimal(amount["value"]) > Decimal(payment["amount"]["value"]):
                raise _invalid("Cannot capture more than was authorized.", "amount.value")
            # YooKassa reports the captured sum as the amount; the rest goes back to the buyer.
            payment["amount"] = amount
        self._succeed(payment)
        return payment

    def _payment_cancel(self, payment_id: str, *, body: dict) -> dict:
        payment = self._find_payment(payment_id)
        if payment["status"] != "waiting_for_capture":
            raise _invalid(f"Payment in status {payment['status']} cannot be canceled.")
        self._cancel(payment, "canceled_by_merchant", "merchant")
        return payment

    def _refund_create(self, *, body: dict) -> dict:
        payment = self.payments.get(body.get("payment_id"))
        if payment is None:
            raise _invalid("Payment not found.", "payment_id")
        if payment["status"] != "succeeded":
            raise _invalid("Only a succeeded payment can be refunded.", "payment_id")
        amount = _amount(body.get("amount"), "amount")
        if amount["currency"] != payment["amount"]["currency"]:
            raise _invalid("The currency differs from the payment's.", "amount.currency")
        refunded = Decimal(payment["refunded_amount"]["value"]) + Decimal(amount["value"])
        if refunded > Decimal(payment["amount"]["value"]):
            raise _invalid("The refund exceeds what is left of the payment.", "amount.value")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 250):
            raise _invalid("description must be at most 250 characters.", "description")
        refund = {
            "id": str(uuid.uuid4()),
            "payment_id": payment["id"],
            "status": "succeeded",
            "amount": amount,
            "created_at": _now(),
        }
        if description is not None:
            refund["description"] = description
        payment["refunded_amount"] = {"value": f"{refunded:.2f}", "currency": amount["currency"]}
        payment["refundable"] = refunded < Decimal(payment["amount"]["value"])
        self.refunds[refund["id"]] = refund
        return refund

    def _refund_get(self, refund_id: str, *, body: dict) -> dict:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise _Refusal(404, "Refund doesn't exist or access denied.")
        return refund

    def _list(self, store: dict[str, dict], query: dict) -> dict:
        """A page of a list: newest first, filtered by creation time, after the cursor."""
        limit = query.get("limit", "10")
        if not re.fullmatch(r"[0-9]{1,3}", limit) or not 1 <= int(limit) <= 100:
            raise _invalid("limit must be from 1 to 100.", "limit")
        bounds = {}
        for name, value in query.items():
            if name.startswith("created_at."):
                operator = name.removeprefix("created_at.")
                if operator not in ("gte", "gt", "lte", "lt"):
                    raise _invalid(f"Unknown filter {name}.", name)
                bounds[operator] = _moment(value, name)
        objects = [
            obj
            for _, obj in sorted(
                enumerate(store.values()),
                key=lambda pair: (_moment(pair[1]["created_at"], "created_at"), pair[0]),
                reverse=True,
            )
            if _within(_moment(obj["created_at"], "created_at"), bounds)
            and obj.get("payment_id") == query.get("payment_id", obj.get("payment_id"))
        ]
        if "cursor" in query:
            try:
                after = base64.urlsafe_b64decode(query["cursor"].encode()).decode()
                start = [obj["id"] for obj in objects].index(after) + 1
            except (ValueError, UnicodeDecodeError):
                raise _invalid("The cursor is not valid.", "cursor") from None
            objects = objects[start:]
        page = objects[: int(limit)]
        answer = {"type": "list", "items": copy.deepcopy(page)}
        if len(objects) > len(page):
            answer["next_cursor"] = base64.urlsafe_b64encode(page[-1]["id"].encode()).decode()
        return answer

    # --- State changes -----------------------------------------------------------------------

    def _find_payment(self, payment_id: str) -> dict:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise _Refusal(404, "Incorrect payment_id. Payment doesn't exist or access denied.")
        return payment

    def _succeed(self, payment: dict) -> None:
        value = Decimal(payment["amount"]["value"])
        currency = payment["amount"]["currency"]
        fee = (value * Decimal("0.035")).quantize(Decimal("0.01"))
        payment.update(
            status="succeeded",
            paid=True,
            captured_at=_now(),
            income_amount={"value": f"{value - fee:.2f}", "currency": currency},
            refunded_amount={"value": "0.00", "currency": currency},
            refundable=True,
        )
        payment.pop("expires_at", None)

    def _cancel(self, payment: dict, reason: str, party: str | None) -> None:
        if payment["status"] in ("succeeded", "canceled"):
            raise _invalid(f"Payment in status {payment['status']} cannot be canceled.")
        payment.update(
            status="canceled",
            paid=False,
            cancellation_details={
                "party": party or _REASON_PARTY.get(reason, "payment_network"),
                "reason": reason,
            },
        )
        payment.pop("expires_at", None)

    @staticmethod
    def _card(card_type: str, last4: str, *, saved: bool) -> dict:
        return {
            "type": "bank_card",
            "id": str(uuid.uuid4()),
            "saved": saved,
            "title": f"Bank card *{last4}",
            "card": {
                "first6": "427600",
                "last4": last4,
                "expiry_month": "12",
                "expiry_year": "2030",
                "card_type": card_type,
                "issuer_country": "RU",
            },
        }


def _amount(value, parameter: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid("An amount object is required.", parameter)
    amount, currency = value.get("value"), value.get("currency")
    # The API takes the value as a decimal string; a JSON number is refused here so that a
    # client sending floats is caught by the contract tests.
    if not isinstance(amount, str) or not _AMOUNT_VALUE.fullmatch(amount):
        raise _invalid("amount.value must be a decimal string.", f"{parameter}.value")
    if Decimal(amount) <= 0:
        raise _invalid("amount.value must be positive.", f"{parameter}.value")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise _invalid("amount.currency must be an ISO 4217 code.", f"{parameter}.currency")
    return {"value": f"{Decimal(amount):.2f}", "currency": currency}


def _check_receipt(receipt, amount: dict) -> None:
    if not isinstance(receipt, dict):
        raise _invalid("receipt must be an object.", "receipt")
    customer = receipt.get("customer")
    if not isinstance(customer, dict) or not (customer.get("email") or customer.get("phone")):
        raise _invalid("The receipt needs the customer's email or phone.", "receipt.customer")
    items = receipt.get("items")
    if not isinstance(items, list) or not items:
        raise _invalid("The receipt needs items.", "receipt.items")
    total = Decimal(0)
    for index, item in enumerate(items):
        where = f"receipt.items[{index}]"
        if not isinstance(item, dict):
            raise _invalid("An item must be an object.", where)
        description = item.get("description")
        if not isinstance(description, str) or not 0 < len(description) <= 128:
            raise _invalid("An item needs a description.", f"{where}.description")
        quantity = item.get("quantity")
        try:
            quantity = Decimal(str(quantity))
        except InvalidOperation:
            raise _invalid("quantity must be a number.", f"{where}.quantity") from None
        if not _QUANTITY.fullmatch(str(item.get("quantity"))) or quantity <= 0:
            raise _invalid("quantity must be a positive number.", f"{where}.quantity")
        price = _amount(item.get("amount"), f"{where}.amount")
        if price["currency"] != amount["currency"]:
            raise _invalid("Item currency differs from the payment's.", f"{where}.amount")
        vat_code = item.get("vat_code")
        if not isinstance(vat_code, int) or isinstance(vat_code, bool) or not 1 <= vat_code <= 12:
            raise _invalid("vat_code must be 1 to 12.", f"{where}.vat_code")
        for name in ("payment_subject", "payment_mode"):
            if not isinstance(item.get(name), str) or not item[name]:
                raise _invalid(f"{name} is required.", f"{where}.{name}")
        total += Decimal(price["value"]) * quantity
    tax_system_code = receipt.get("tax_system_code")
    if tax_system_code is not None and (
        not isinstance(tax_system_code, int) or not 1 <= tax_system_code <= 6
    ):
        raise _invalid("tax_system_code must be 1 to 6.", "receipt.tax_system_code")
    if total != Decimal(amount["value"]):
        raise _invalid("The receipt's items do not add up to the payment amount.", "receipt.items")


def _moment(value, parameter: str) -> datetime:
    """An ISO 8601 time with a zone, as YooKassa writes and accepts them."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _invalid(f"{parameter} must be an ISO 8601 time.", parameter) from None
    if moment.tzinfo is None:
        raise _invalid(f"{parameter} needs a time zone.", parameter)
    return moment


def _within(moment: datetime, bounds: dict) -> bool:
    return (
        ("gte" not in bounds or moment >= bounds["gte"])
        and ("gt" not in bounds or moment > bounds["gt"])
        and ("lte" not in bounds or moment <= bounds["lte"])
        and ("lt" not in bounds or moment < bounds["lt"])
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
