"""
Reference ceilings: bare Django views that do the same database writes as the real paths,
in raw SQL, with no authentication, no DRF, no serializers and no middleware
(`bench/wsgi.py` sends `/bench/ref/` past the middleware stack). Each scenario's numbers
are read as a ratio of these, measured in the same run on the same processes.

What each one writes mirrors the queries of one real request, captured with
`CaptureQueriesContext` (`bench/capture.py` prints them):

- create payment: in one transaction the `Payment` row, its first `PaymentEvent` and the
  `IdempotencyKey` row holding the rendered response; then one message on a Redis list,
  as `enqueue_on_commit` publishes the checkout task after commit. The advisory lock, the
  key lookup, the API key lookup and the throttle counters are not done: they are what
  the real path pays for idempotency, authentication and rate limits.
- webhook ingest: the `InboundWebhook` row, deduplicated with `ON CONFLICT DO NOTHING`
  (the real path catches the unique violation), then the enqueue. No signature check.
- list payments: the same keyset `SELECT` of a page (`id < cursor ORDER BY id DESC LIMIT
  21`, every column, as the ORM asks) and its JSON encoding.

Column lists come from the models, so a column added by a migration is written here too
(with its default); a new required column without a default fails loudly at import.
"""

import json
from datetime import UTC, datetime
from decimal import Decimal

import redis
from django.conf import settings
from django.db import connection, models, transaction
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from payments.models import IdempotencyKey, Payment, PaymentEvent
from webhooks.models import InboundWebhook

# Where the reference "enqueues": a list nobody consumes, emptied by the orchestrator.
QUEUE_KEY = "bench:ref:queue"
_redis = redis.Redis.from_url(settings.CELERY_BROKER_URL or settings.REDIS_URL)
# About the size of the Celery message the real path publishes for one task.
_MESSAGE_PAD = "x" * 900


class _Insert:
    """One INSERT for a model, every concrete column, defaults filled in per row."""

    def __init__(self, model: type[models.Model], *, on_conflict: str = ""):
        fields = [
            f
            for f in model._meta.concrete_fields
            if not (f.primary_key and isinstance(f, models.AutoField | models.BigAutoField))
        ]
        self.fields = fields
        columns = ", ".join(f'"{f.column}"' for f in fields)
        holes = ", ".join("%s::jsonb" if isinstance(f, models.JSONField) else "%s" for f in fields)
        self.sql = (
            f'INSERT INTO "{model._meta.db_table}" ({columns}) VALUES ({holes}) {on_conflict}'  # noqa: S608
        )
        self.index = {f.attname: i for i, f in enumerate(fields)}
        self._json = {f.attname for f in fields if isinstance(f, models.JSONField)}
        self._now = {
            f.attname
            for f in fields
            if isinstance(f, models.DateTimeField) and (f.auto_now or f.auto_now_add)
        }

    def values(self, now: datetime, **given) -> list:
        row = []
        for f in self.fields:
            name = f.attname
            if name in given:
                value = given[name]
            elif name in self._now:
                value = now
            else:
                # The model's default, or "" for a blank text column, None for a nullable.
                value = f.get_default()
            if name in self._json and value is not None:
                value = json.dumps(value)
            row.append(value)
        return row


_PAYMENT = _Insert(Payment)
_EVENT = _Insert(PaymentEvent)
_KEY = _Insert(IdempotencyKey, on_conflict="ON CONFLICT DO NOTHING RETURNING 1")
_WEBHOOK = _Insert(InboundWebhook, on_conflict="ON CONFLICT DO NOTHING RETURNING 1")
_PAYMENT_COLUMNS = [f.column for f in Payment._meta.concrete_fields]
_PAGE_SQL = (
    f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in _PAYMENT_COLUMNS)} "  # noqa: S608
    'FROM "payments_payment" WHERE "merchant_id" = %s AND NOT "livemode" {cursor} '
    'ORDER BY "id" DESC LIMIT 21'
)


def _enqueue(name: str, object_id: str) -> None:
    _redis.lpush(QUEUE_KEY, json.dumps({"task": name, "args": [object_id], "pad": _MESSAGE_PAD}))


def _time(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


@csrf_exempt
def payment_create(request, merchant_id: str):
    """`POST /bench/ref/payments/<merchant>`: the rows of a created payment, raw."""
    data = json.loads(request.body)
    key = request.headers.get("Idempotency-Key", "")
    now = datetime.now(UTC)
    amount = Decimal(data["amount"])
    provider = data.get("provider", "sandbox")
    payment = _PAYMENT.values(
        now,
        merchant_id=merchant_id,
        amount=amount,
        currency=data["currency"],
        provider=provider,
        description=data.get("description", ""),
        return_url=data.get("return_url", ""),
        metadata=data.get("metadata", {}),
    )
    payment_id = payment[_PAYMENT.index["id"]]
    body = {
        "id": payment_id,
        "object": "payment",
        "status": "pending",
        "amount": _money(amount),
        "currency": data["currency"],
        "amount_captured": "0.00",
        "amount_refunded": "0.00",
        "capture": True,
        "provider": provider,
        "provider_payment_id": None,
        "checkout_url": f"{settings.PUBLIC_BASE_URL}/pay/{payment_id}",
        "customer": None,
        "description": data.get("description", ""),
        "order_id": "",
        "metadata": data.get("metadata", {}),
        "return_url": data.get("return_url", ""),
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "created": _time(now),
        "updated": _time(now),
    }
    rendered = json.dumps(body, separators=(",", ":")).encode()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_PAYMENT.sql, payment)
        cursor.execute(
            _EVENT.sql,
            _EVENT.values(
                now,
                payment_id=payment_id,
                type="created",
                to_status="pending",
                source="api",
                actor="bench",
                data={"amount": _money(amount), "currency": data["currency"]},
            ),
        )
        cursor.execute(
            _KEY.sql,
            _KEY.values(
                now,
                merchant_id=merchant_id,
                key=key,
                request_method="POST",
                request_path=request.path,
                request_fingerprint="0" * 64,
                response_status=201,
                response_body=rendered,
                response_content_type="application/json",
            ),
        )
    _enqueue("payment_checkout_dispatch", payment_id)
    return HttpResponse(rendered, status=201, content_type="application/json")


@csrf_exempt
def webhook_ingest(request, provider: str):
    """`POST /bench/ref/webhooks/<provider>`: store the event once, raw; no verification."""
    body = request.body
    payload = json.loads(body)
    now = datetime.now(UTC)
    headers = {
        k.lower(): v
        for k, v in request.headers.items()
        if k.lower() in ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")
    }
    row = _WEBHOOK.values(
        now,
        provider=provider,
        event_id=str(payload["id"]),
        event_type=str(payload["type"]),
        headers=headers,
        body=body.decode(),
        payload=payload,
        source_ip=request.META.get("REMOTE_ADDR"),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_WEBHOOK.sql, row)
        stored = cursor.fetchone() is not None
    if stored:
        _enqueue("inbound_webhook_process", row[_WEBHOOK.index["id"]])
    return JsonResponse({"received": True, "duplicate": not stored})


def payment_list(request, merchant_id: str):
    """`GET /bench/ref/payments/<merchant>?before=<id>`: one keyset page, raw, as JSON."""
    before = request.GET.get("before")
    sql = _PAGE_SQL.format(cursor='AND "id" < %s' if before else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, [merchant_id, before] if before else [merchant_id])
        rows = cursor.fetchall()
    # DjangoJSONEncoder (JsonResponse's) writes the decimals and times as strings.
    results = [dict(zip(_PAYMENT_COLUMNS, row, strict=True)) for row in rows[:20]]
    next_id = results[-1]["id"] if len(rows) > 20 else None
    return JsonResponse({"next": next_id, "previous": None, "results": results})
