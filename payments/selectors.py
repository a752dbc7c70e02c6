"""Read operations of the payments app. Loaders that check access are `*_for_merchant`."""

import time

from django.conf import settings
from django.db.models import QuerySet

from payments import credentials, providers
from payments.errors import NotFound
from payments.models import (
    APIKey,
    CreditTransaction,
    Customer,
    Merchant,
    Payment,
    PaymentEvent,
    Refund,
)

# Keys this process looked up lately, by hash: (good until, the key with its merchant).
# Every API request authenticates, and the lookup was an eighth of a create request's time.
# A change to any key or merchant saved in this process empties it (`api_keys_forget`);
# other processes see it within API_KEY_CACHE_SECONDS.
_api_keys: dict[str, tuple[float, APIKey]] = {}
_API_KEYS_KEPT = 10_000


def api_key_get_by_raw_key(raw_key: str) -> APIKey | None:
    if not credentials.key_looks_valid(raw_key):
        return None
    key_hash = credentials.key_hash(raw_key)
    ttl = settings.API_KEY_CACHE_SECONDS
    now = time.monotonic()
    if ttl:
        kept = _api_keys.get(key_hash)
        if kept is not None and kept[0] > now:
            return kept[1]
    api_key = APIKey.objects.select_related("merchant").filter(key_hash=key_hash).first()
    if ttl and api_key is not None:  # unknown keys are not kept: no room for guesses
        if len(_api_keys) >= _API_KEYS_KEPT:
            _api_keys.clear()
        _api_keys[key_hash] = (now + ttl, api_key)
    return api_key


def api_keys_forget(**kwargs) -> None:
    """A key or a merchant changed: look every key up again (a signal receiver)."""
    _api_keys.clear()


def merchant_get(merchant_id: str) -> Merchant:
    try:
        return Merchant.objects.get(pk=merchant_id)
    except Merchant.DoesNotExist:
        raise NotFound("merchant", merchant_id) from None


def customer_list(*, merchant: Merchant) -> QuerySet[Customer]:
    return Customer.objects.filter(merchant=merchant).prefetch_related("balances")


def _get_owned(model, resource: str, merchant: Merchant, object_id: str, param: str | None = None):
    queryset = model.objects.filter(merchant=merchant)
    return object_get_or_404(queryset, resource, object_id, param=param)


def object_get_or_404(queryset: QuerySet, resource: str, object_id: str, *, param=None):
    """
    The object of `queryset` (already narrowed to what the caller may see) with this id,
    or NotFound: another merchant's or customer's object is indistinguishable from one
    that does not exist.
    """
    # PostgreSQL text cannot hold NUL; such an id names nothing.
    obj = None if "\x00" in object_id else queryset.filter(pk=object_id).first()
    if obj is None:
        raise NotFound(resource, object_id, param=param)
    return obj


def customer_get_for_merchant(
    *, merchant: Merchant, customer_id: str, param: str | None = None
) -> Customer:
    """`param` names the request field the id came from, when it came from the body."""
    return _get_owned(Customer, "customer", merchant, customer_id, param)


def customer_get_for_session(*, customer_id: str, merchant_id: str) -> Customer | None:
    """The customer a session token names, if it still exists and its merchant owns it."""
    return (
        Customer.objects.select_related("merchant")
        .filter(pk=customer_id, merchant_id=merchant_id)
        .first()
    )


def client_config_get(*, merchant: Merchant, livemode: bool) -> dict:
    enabled = providers.enabled_providers()
    stripe_key = settings.STRIPE_PUBLISHABLE_KEY if providers.STRIPE in enabled else None
    return {
        "merchant": merchant,
        "livemode": livemode,
        "providers": enabled,
        "stripe_publishable_key": stripe_key or None,
    }


def payment_list(
    *, merchant: Merchant, livemode: bool, customer: Customer | None = None
) -> QuerySet[Payment]:
    """Newest first. With `customer` (a customer session), only that customer's payments."""
    # Test and live keys see separate worlds, as with Stripe.
    payments = Payment.objects.filter(merchant=merchant, livemode=livemode)
    if customer is not None:
        # Query-string filters applied later can only narrow this further, never widen it.
        payments = payments.filter(customer=customer)
    return payments


def payment_get_for_merchant(
    *, merchant: Merchant, livemode: bool, payment_id: str, customer: Customer | None = None
) -> Payment:
    """With `customer`, another customer's payment is missing, as another merchant's is."""
    payments = payment_list(merchant=merchant, livemode=livemode, customer=customer)
    return object_get_or_404(payments, "payment", payment_id)


def payment_events_list(*, payment: Payment) -> QuerySet[PaymentEvent]:
    return PaymentEvent.objects.filter(payment=payment)


def payment_get_public(payment_id: str) -> Payment | None:
    """For the pay link: the id (80 random bits) is the buyer's only credential."""
    if "\x00" in payment_id:
        return None
    return Payment.objects.select_related("merchant").filter(pk=payment_id).first()


def refund_list_for_payment(*, payment: Payment) -> QuerySet[Refund]:
    return Refund.objects.filter(payment=payment)


def refund_list(*, merchant: Merchant, livemode: bool) -> QuerySet[Refund]:
    return Refund.objects.filter(merchant=merchant, livemode=livemode)


def refund_get_for_merchant(*, merchant: Merchant, livemode: bool, refund_id: str) -> Refund:
    refund = _get_owned(Refund, "refund", merchant, refund_id)
    if refund.livemode != livemode:
        raise NotFound("refund", refund_id)
    return refund


def credit_list(*, customer: Customer, livemode: bool) -> QuerySet[CreditTransaction]:
    return CreditTransaction.objects.filter(customer=customer, livemode=livemode)
