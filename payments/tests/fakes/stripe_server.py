"""
A fake Stripe API for contract tests: a real HTTP server on 127.0.0.1 that the real `stripe`
SDK talks to, speaking Stripe's wire format (form-encoded requests with bracketed keys,
`Authorization: Bearer sk_…`, `Idempotency-Key`, JSON objects and error bodies as Stripe
shapes them) and recording every request for assertions.

Only what our adapter uses is implemented: Checkout Sessions (create, retrieve, expire),
PaymentIntents (create off-session, retrieve with `expand[]`, capture, cancel, list) and
refunds (create, list). Lists behave as Stripe's do: newest first, `created` filters
(`gt`/`gte`/`lt`/`lte` or an exact second), `limit` 1 to 100 (default 10), `starting_after`
an id of the list, and `has_more`. Test controls play the parts Stripe's servers and the
buyer would: completing or failing a Checkout page, saved cards that decline, scripted
error responses, a slow network, and event payloads built from the fake's current state.
"""

import json
import re
import secrets
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2026-10-28.endive"
CHECKOUT_URL = "https://checkout.stripe.com/c/pay/"

# Statuses from which Stripe lets a PaymentIntent be canceled.
_CANCELABLE = {
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    form: dict
    body: str

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass
class _Scripted:
    status: int
    body: dict
    headers: dict = field(default_factory=dict)
    path: str | None = None


class _StripeError(Exception):
    def __init__(self, status: int, error: dict):
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error


def error_body(
    type: str, message: str, *, code=None, param=None, decline_code=None, **extra
) -> dict:
    """An error object as Stripe nests it under `"error"`."""
    error = {"type": type, "message": message, "code": code, "param": param, **extra}
    if decline_code:
        error["decline_code"] = decline_code
    if code:
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return error


def _invalid(message: str, *, code=None, param=None, status: int = 400) -> _StripeError:
    return _StripeError(
        status, error_body("invalid_request_error", message, code=code, param=param)
    )


def parse_form(pairs: list[tuple[str, str]]) -> dict:
    """
    Rebuild the nested structure the SDK flattened into `a[b][0][c]=v` keys; objects whose
    keys are all indices (`[0]`, `[1]`, or `[]`) become lists.
    """
    root: dict = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + (re.findall(r"([^\[\]]*)\]", "[" + rest) if rest else [])
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = str(len(node))  # `[]` appends
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _as_int(form: dict, name: str, *, required: bool = True) -> int | None:
    value = form.get(name)
    if value is None:
        if required:
            raise _invalid(f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]+", value):
        raise _invalid(f"Invalid integer: {value}", code="parameter_invalid_integer", param=name)
    return int(value)


def _expand_list(params: dict) -> list:
    expand = params.get("expand") or []
    return expand if isinstance(expand, list) else [expand]


def _created_matches(created: int, condition) -> bool:
    """Stripe's `created` list filter: an exact second, or a dict of gt/gte/lt/lte."""
    if condition is None:
        return True
    if isinstance(condition, str):
        return created == _as_int({"created": condition}, "created")
    if not isinstance(condition, dict) or not set(condition) <= {"gt", "gte", "lt", "lte"}:
        raise _invalid("Invalid created: use gt, gte, lt or lte.", param="created")
    bounds = {name: _as_int(condition, name) for name in condition}
    return (
        created > bounds.get("gt", created - 1)
        and created >= bounds.get("gte", created)
        and created < bounds.get("lt", created + 1)
        and created <= bounds.get("lte", created)
    )


def _public(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


class FakeStripe:
    """The fake's state and controls; `start()` it, point the SDK at `url`, `stop()` it."""

    def __init__(self, secret_key: str = "sk_test_fake"):
        self.secret_key = secret_key
        self.requests: list[RecordedRequest] = []
        self.sessions: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.charges: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.payment_methods: dict[str, dict] = {}
        self.customers: set[str] = set()
        self.refund_status = "succeeded"  # what new refunds come back as
        self._idempotency: dict[str, tuple] = {}
        self._scripted: deque[_Scripted] = deque()
        self._delay = 0.0
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        # A short poll keeps `stop()` (which waits for the loop to notice) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # --- Lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeStripe":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases requests held by `delay`
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- Controls -------------------------------------------------------------------------

    def respond_next(
        self,
        status: int,
        error: dict | None = None,
        *,
        times: int = 1,
        headers: dict | None = None,
        path: str | None = None,
    ) -> None:
        """
        Answer the next `times` requests (to `path`, if given) with `status` and Stripe's
        error body, before any auth or idempotency check: what a failing load balancer or a
        struggling Stripe looks like from outside. Such answers are not stored under the
        request's idempotency key, so a retry can succeed.
        """
        if error is None:
            error = error_body("api_error", "An unknown error occurred.")
        for _ in range(times):
            self._scripted.append(_Scripted(status, {"error": error}, headers or {}, path))

    def delay(self, seconds: float) -> None:
        """Hold every later request this long before answering (timeouts)."""
        self._delay = seconds

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def saved_method(
        self,
        *,
        customer: str | None = None,
        brand: str = "visa",
        last4: str = "4242",
        decline_code: str | None = None,
        error_code: str = "card_declined",
    ) -> dict:
        """A card saved on a customer; with `decline_code`, every charge of it is declined."""
        with self._lock:
            customer = customer or _new_id("cus")
            self.customers.add(customer)
            method = self._method_create(customer, brand, last4)
            if decline_code:
                method["_decline"] = (error_code, decline_code)
            return _public(method)

    def complete_session(self, session_id: str, *, brand: str = "visa", last4: str = "4242"):
        """The buyer pays on the Checkout page with a card that goes through."""
        with self._lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", f"session is {session['status']}"
            intent = self._session_intent(session)
            data = session["_payment_intent_data"]
            customer = session["customer"]
            if customer is None and session["_customer_creation"] == "always":
                customer = _new_id("cus")
                self.customers.add(customer)
            # Checkout attaches the card to the customer only when asked to keep it.
            saving = bool(data.get("setup_future_usage")) and customer is not None
            method = self._method_create(customer if saving else None, brand, last4)
            manual = intent["capture_method"] == "manual"
            charge = self._charge_create(intent, method, customer, captured=not manual)
            intent.update(
                status="requires_capture" if manual else "succeeded",
                amount_capturable=intent["amount"] if manual else 0,
                amount_received=0 if manual else intent["amount"],
                payment_method=method["id"],
                latest_charge=charge["id"],
                last_payment_error=None,
                setup_future_usage=data.get("setup_future_usage"),
            )
            session.update(
                status="complete",
                payment_status="unpaid" if manual else "paid",
                customer=customer,
            )
            return _public(session)

    def fail_session_attempt(
        self, session_id: str, *, decline_code: str = "insufficient_funds"
    ) -> dict:
        """The buyer's card is declined on the Checkout page; the page stays open for a retry."""
        with self._lock:
            session = self.sessions[session_id]
            intent = self._session_intent(session)
            method = self._method_create(None, "visa", "0002")
            intent.update(
                status="requires_payment_method",
                payment_method=None,
                last_payment_error={
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": decline_code,
                    "message": "Your card was declined.",
                    "payment_method": {"id": method["id"], "type": "card"},
                },
            )
            return _public(intent)

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> dict:
        """A refund that Stripe could not send back to the card after all."""
        with self._lock:
            refund = self.refunds[refund_id]
            refund.update(status="failed", failure_reason=reason)
            charge = self.charges[refund["charge"]]
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = False
            return _public(refund)

    def event(self, event_type: str, object_id: str) -> dict:
        """A webhook event about one object, as Stripe would send it now (snapshot payload)."""
        with self._lock:
            return {
                "id": _new_id("evt"),
                "object": "event",
                "api_version": API_VERSION,
                "created": int(time.time()),
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
                "data": {"object": self._snapshot(object_id)},
            }

    # --- Objects --------------------------------------------------------------------------

    def _snapshot(self, object_id: str) -> dict:
        prefix = object_id.split("_", 1)[0]
        store = {
            "cs": self.sessions,
            "pi": self.intents,
            "ch": self.charges,
            "re": self.refunds,
        }[prefix]
        return json.loads(json.dumps(_public(store[object_id])))

    def _intent_view(self, intent: dict, expand: list) -> dict:
        view = _public(intent)
        if "latest_charge" in expand and intent["latest_charge"]:
            view["latest_charge"] = _public(self.charges[intent["latest_charge"]])
        return view

    def _intent_create(self, *, amount, currency, capture_method, metadata, **fields) -> dict:
        intent = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": capture_method,
            "client_secret": None,
            "created": int(time.time()),
            "currency": currency,
            "customer": None,
            "description": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "payment_method": None,
            "payment_method_types": ["card"],
            "setup_future_usage": None,
            "status": "requires_payment_method",
            "canceled_at": None,
            "cancellation_reason": None,
            "_session": None,
            **fields,
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.intents[intent["id"]] = intent
        return intent

    def _session_intent(self, session: dict) -> dict:
        """Checkout makes the session's PaymentIntent when the buyer first confirms."""
        if session["payment_intent"]:
            return self.intents[session["payment_intent"]]
        data = session["_payment_intent_data"]
        intent = self._intent_create(
            amount=session["amount_total"],
            currency=session["currency"],
            capture_method=data.get("capture_method", "automatic_async"),
            metadata=dict(data.get("metadata") or {}),
            description=data.get("description"),
            _session=session["id"],
        )
        session["payment_intent"] = intent["id"]
        return intent

    def _method_create(self, customer: str | None, brand: str, last4: str) -> dict:
        method = {
            "id": _new_id("pm"),
            "object": "payment_method",
            "type": "card",
            "customer": customer,
            "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034},
            "_decline": None,
        }
        self.payment_methods[method["id"]] = method
        return method

    def _charge_create(
        self, intent: dict, method: dict, customer: str | None, *, captured: bool
    ) -> dict:
        charge = {
            "id": _new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if captured else 0,
            "amount_refunded": 0,
            "captured": captured,
            "created": int(time.time()),
            "currency": intent["currency"],
            "customer": customer,
            "livemode": False,
            "paid": True,
            "payment_intent": intent["id"],
            "payment_method": method["id"],
            "payment_method_details": {
                "type": "card",
                "card": {**method["card"], "funding": "credit", "country": "US"},
            },
            "refunded": False,
            "status": "succeeded",
        }
        self.charges[charge["id"]] = charge
        intent["customer"] = customer
        return charge

    # --- Endpoints ------------------------------------------------------------------------

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        routes = [
            ("POST", r"/v1/checkout/sessions", self._sessions_create),
            ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self._sessions_retrieve),
            ("POST", r"/v1/checkout/sessions/(?P<id>[^/]+)/expire", self._sessions_expire),
            ("POST", r"/v1/payment_intents", self._intents_create),
            ("GET", r"/v1/payment_intents", self._intents_list),
            ("GET", r"/v1/payment_intents/(?P<id>[^/]+)", self._intents_retrieve),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/capture", self._intents_capture),
            ("POST", r"/v1/payment_intents/(?P<id>[^/]+)/cancel", self._intents_cancel),
            ("POST", r"/v1/refunds", self._refunds_create),
            ("GET", r"/v1/refunds", self._refunds_list),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                with self._lock:
                    return handler(params, **match.groupdict())
        raise _invalid(f"Unrecognized request URL ({method}: {path}).", status=404)

    def _sessions_create(self, params: dict) -> tuple[int, dict]:
        if params.get("mode") != "payment":
            raise _invalid("This fake only knows mode=payment.", param="mode")
        for required in ("success_url", "line_items"):
            if not params.get(required):
                raise _invalid(
                    f"Missing required param: {required}.",
                    code="parameter_missing",
                    param=required,
                )
        items = params["line_items"]
        if not isinstance(items, list) or len(items) != 1:
            raise _invalid("This fake takes exactly one line item.", param="line_items")
        price = items[0].get("price_data") or {}
        unit_amount = _as_int(price, "unit_amount")
        quantity = _as_int(items[0], "quantity")
        currency = price.get("currency", "")
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise _invalid(f"Invalid currency: {currency}.", param="currency")
        if not (price.get("product_data") or {}).get("name"):
            raise _invalid(
                "Missing required param: line_items[0][price_data][product_data][name].",
                code="parameter_missing",
            )
        session_id = _new_id("cs_test")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": unit_amount * quantity,
            "amount_total": unit_amount * quantity,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": int(time.time()),
            "currency": currency,
            "customer": params.get("customer"),
            "customer_email": params.get("customer_email"),
            "expires_at": int(time.time()) + 24 * 3600,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": "payment",
            "payment_intent": None,  # made when the buyer confirms, as Stripe does now
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params["success_url"],
            "url": CHECKOUT_URL + session_id,
            "_payment_intent_data": params.get("payment_intent_data") or {},
            "_customer_creation": params.get("customer_creation", "if_required"),
        }
        self.sessions[session_id] = session
        return 200, _public(session)

    def _session(self, session_id: str) -> dict:
        if session_id not in self.sessions:
            raise _invalid(
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
                param="session",
                status=404,
            )
        return self.sessions[session_id]

    def _sessions_retrieve(self, params: dict, id: str) -> tuple[int, dict]:
        return 200, _public(self._session(id))

    def _sessions_expire(self, params: dict, id: str) -> tuple[int, dict]:
        session = self._session(id)
        if session["status"] != "open":
            raise _invalid(
                'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f"Checkout Session has a status of `{session['status']}`."
            )
        session["status"] = "expired"
        if session["payment_intent"]:
            intent = self.intents[session["payment_intent"]]
            intent.update(status="canceled", canceled_at=int(time.time()))
        return 200, _public(session)

    def _intent(self, intent_id: str) -> dict:
        if intent_id not in self.intents:
            raise _invalid(
                f"No such payment_intent: '{intent_id}'",
                code="resource_missing",
                param="intent",
                status=404,
            )
        return self.intents[intent_id]

    def _intents_retrieve(self, params: dict, id: str) -> tuple[int, dict]:
        return 200, self._intent_view(self._intent(id), _expand_list(params))

    def _intents_create(self, params: dict) -> tuple[int, dict]:
        amount = _as_int(params, "amount")
        currency = params.get("currency") or ""
        method_id = params.get("payment_method")
        method = self.payment_methods.get(method_id)
        if method is None:
            raise _invalid(
                f"No such PaymentMethod: '{method_id}'",
                code="resource_missing",
                param="payment_method",
            )
        if method["customer"] and params.get("customer") != method["customer"]:
            raise _invalid(
                "The provided PaymentMethod belongs to a Customer; pass that customer.",
                param="customer",
            )
        if params.get("confirm") != "true" or params.get("off_session") != "true":
            raise _invalid("This fake only creates confirmed off-session PaymentIntents.")
        intent = self._intent_create(
            amount=amount,
            currency=currency,
            capture_method=params.get("capture_method", "automatic_async"),
            metadata=params.get("metadata") or {},
            description=params.get("description"),
            customer=params.get("customer"),
            payment_method=method_id,
        )
        if method["_decline"]:
            code, decline_code = method["_decline"]
            error = error_body(
                "card_error",
                "Your card was declined.",
                code=code,
                decline_code=decline_code,
                payment_method={"id": method_id, "object": "payment_method", "type": "card"},
            )
            intent.update(
                payment_method=None,
                last_payment_error={
                    k: v for k, v in error.items() if k not in ("doc_url", "param")
                },
            )
            error["payment_intent"] = _public(intent)
            raise _StripeError(402, error)
        charge = self._charge_create(intent, method, params.get("customer"), captured=True)
        intent.update(status="succeeded", amount_received=amount, latest_charge=charge["id"])
        return 200, self._intent_view(intent, _expand_list(params))

    def _intents_capture(self, params: dict, id: str) -> tuple[int, dict]:
        intent = self._intent(id)
        if intent["status"] != "requires_capture":
            raise _invalid(
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following "
                "statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        amount = _as_int(params, "amount_to_capture", required=False)
        amount = intent["amount_capturable"] if amount is None else amount
        if amount > intent["amount_capturable"]:
            raise _invalid(
                "The amount to capture is greater than the amount capturable.",
                code="amount_too_large",
                param="amount_to_capture",
            )
        charge = self.charges[intent["latest_charge"]]
        charge.update(amount_captured=amount, captured=True)
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return 200, self._intent_view(intent, _expand_list(params))

    def _intents_cancel(self, params: dict, id: str) -> tuple[int, dict]:
        intent = self._intent(id)
        session = self.sessions.get(intent["_session"] or "")
        if session is not None and session["status"] == "open":
            raise _invalid(
                "You cannot cancel the PaymentIntent for a Checkout Session. "
                "Expire the Checkout Session instead."
            )
        if intent["status"] not in _CANCELABLE:
            raise _invalid(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent.update(
            status="canceled",
            amount_capturable=0,
            canceled_at=int(time.time()),
            cancellation_reason=params.get("cancellation_reason"),
        )
        return 200, self._intent_view(intent, _expand_list(params))

    def _refunds_create(self, params: dict) -> tuple[int, dict]:
        intent = self._intent(params.get("payment_intent") or "")
        if intent["status"] != "succeeded":
            raise _invalid(
                f"This PaymentIntent has a status of {intent['status']}; only succeeded "
                "payments can be refunded.",
                code="payment_intent_unexpected_state",
            )
        charge = self.charges[intent["latest_charge"]]
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining == 0:
            raise _invalid(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = _as_int(params, "amount", required=False)
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                code="amount_too_large",
                param="amount",
            )
        reason = params.get("reason")
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise _invalid(f"Invalid reason: {reason}", param="reason")
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "failure_reason": None,
            "metadata": params.get("metadata") or {},
            "payment_intent": intent["id"],
            "reason": reason,
            "status": self.refund_status,
        }
        self.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        return 200, _public(refund)

    def _refunds_list(self, params: dict) -> tuple[int, dict]:
        matching = [
            refund
            for refund in self.refunds.values()
            if refund["charge"] == params.get("charge", refund["charge"])
            and refund["payment_intent"] == params.get("payment_intent", refund["payment_intent"])
        ]
        return 200, self._list(matching, params, "/v1/refunds", _public)

    def _intents_list(self, params: dict) -> tuple[int, dict]:
        matching = [
            intent
            for intent in self.intents.values()
            if intent["customer"] == params.get("customer", intent["customer"])
        ]
        expand = [
            name.removeprefix("data.")
            for name in _expand_list(params)
            if isinstance(name, str) and name.startswith("data.")
        ]
        return 200, self._list(
            matching, params, "/v1/payment_intents", lambda i: self._intent_view(i, expand)
        )

    def _list(self, objects: list[dict], params: dict, url: str, view) -> dict:
        """A page of a Stripe list: newest first, filtered by `created`, after a cursor."""
        limit = _as_int(params, "limit", required=False)
        limit = 10 if limit is None else limit
        if not 1 <= limit <= 100:
            raise _invalid(
                f"This value must be between 1 and 100 (it currently is '{limit}').",
                param="limit",
            )
        # Insertion order breaks ties within a second, as Stripe's own order does.
        ordered = [
            obj
            for _, obj in sorted(
                enumerate(objects), key=lambda pair: (pair[1]["created"], pair[0]), reverse=True
            )
            if _created_matches(obj["created"], params.get("created"))
        ]
        after = params.get("starting_after")
        if after is not None:
            ids = [obj["id"] for obj in ordered]
            known = after in ids or any(after in store for store in (self.intents, self.refunds))
            if not known:
                raise _invalid(
                    f"No such object: '{after}'", code="resource_missing", param="starting_after"
                )
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        return {
            "object": "list",
            "url": url,
            "has_more": len(ordered) > limit,
            "data": [view(obj) for obj in ordered[:limit]],
        }

    # --- The HTTP side --------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> tuple[int, dict, dict]:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length).decode("utf-8") if length else ""
        query = parse_form(parse_qsl(parts.query, keep_blank_values=True))
        form = parse_form(parse_qsl(body, keep_blank_values=True))
        recorded = RecordedRequest(
            method=request.command,
            path=parts.path,
            query=query,
            headers=dict(request.headers.items()),
            form=form,
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
            scripted = self._next_scripted(parts.path)
        if self._delay:
            self._stopping.wait(self._delay)
        if scripted is not None:
            return scripted.status, scripted.body, scripted.headers

        if recorded.header("Authorization") != f"Bearer {self.secret_key}":
            key = (recorded.header("Authorization") or "").removeprefix("Bearer ")
            return (
                401,
                {
                    "error": error_body(
                        "invalid_request_error",
                        f"Invalid API Key provided: {key[:8]}****{key[-4:]}",
                    )
                },
                {},
            )
        if request.command != "POST":
            return self._execute(request.command, parts.path, query)

        content_type = recorded.header("Content-Type") or ""
        if body and not content_type.startswith("application/x-www-form-urlencoded"):
            return 400, {"error": error_body("invalid_request_error", "Send a form.")}, {}
        key = recorded.header("Idempotency-Key")
        fingerprint = (parts.path, form)
        with self._lock:
            if key in self._idempotency:
                stored_fingerprint, status, response = self._idempotency[key]
                if stored_fingerprint != fingerprint:
                    return (
                        400,
                        {
                            "error": error_body(
                                "idempotency_error",
                                "Keys for idempotent requests can only be used with the "
                                "same parameters they were first used with.",
                            )
                        },
                        {},
                    )
                return status, response, {"Idempotent-Replayed": "true"}
            status, response, headers = self._execute("POST", parts.path, form)
            if key:
                # Stripe keeps whatever an endpoint that ran answered, errors included.
                self._idempotency[key] = (fingerprint, status, response)
            return status, response, headers

    def _execute(self, method: str, path: str, params: dict) -> tuple[int, dict, dict]:
        try:
            status, response = self._route(method, path, params)
        except _StripeError as exc:
            return exc.status, {"error": exc.error}, {}
        return status, json.loads(json.dumps(response)), {}

    def _next_scripted(self, path: str) -> _Scripted | None:
        for scripted in list(self._scripted):
            if scripted.path in (None, path):
                self._scripted.remove(scripted)
                return scripted
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (the timeout tests) leaves a broken pipe behind: expected.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeStripe/1.0"

    def do_GET(self):
        self._respond()

    def do_POST(self):
        self._respond()

    def _respond(self):
        status, body, headers = self.server.fake._handle(self)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", _new_id("req"))
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or API_VERSION)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        pass  # the recorded requests say more, and test output stays quiet
