"""Write operations of the payments app. Views, admin and commands call these."""

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from payments import credentials
from payments.errors import Conflict, ErrorCode, ValidationFailed
from payments.models import APIKey, Customer, Merchant

# last_used_at is a hint for humans; writing it on every request would turn each read into
# a write, so it is refreshed at most once per this interval.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


def merchant_create(*, name: str, default_provider: str = "sandbox") -> Merchant:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed(
            "A merchant needs a name.", code=ErrorCode.PARAMETER_MISSING, param="name"
        )
    return Merchant.objects.create(name=name, default_provider=default_provider)


@transaction.atomic
def merchant_onboard(*, name: str, livemode: bool = False) -> tuple[Merchant, str, str]:
    """Create a merchant with a fresh secret and publishable key; returns both raw keys."""
    merchant = merchant_create(name=name)
    _, secret_key = api_key_create(merchant=merchant, kind=APIKey.Kind.SECRET, livemode=livemode)
    _, publishable_key = api_key_create(
        merchant=merchant, kind=APIKey.Kind.PUBLISHABLE, livemode=livemode
    )
    return merchant, secret_key, publishable_key


def api_key_create(
    *,
    merchant: Merchant,
    kind: str,
    livemode: bool = False,
    name: str = "",
    raw_key: str | None = None,
) -> tuple[APIKey, str]:
    """
    Issue a key for `merchant`. Returns the stored row and the raw key, which exists only
    in this return value: show it to the person once and forget it.
    """
    if kind not in APIKey.Kind.values:
        raise ValidationFailed(
            f"Key type must be one of: {', '.join(APIKey.Kind.values)}.", param="type"
        )
    if raw_key is None:
        raw_key = credentials.key_generate(kind, livemode)
    elif not raw_key.startswith(credentials.key_prefix(kind, livemode)) or not (
        credentials.key_looks_valid(raw_key)
    ):
        raise ValidationFailed("The key does not match its type and mode.", param="key")
    api_key = APIKey.objects.create(
        merchant=merchant,
        kind=kind,
        livemode=livemode,
        name=name,
        prefix=raw_key[: credentials.DISPLAY_PREFIX_LENGTH],
        key_hash=credentials.key_hash(raw_key),
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: APIKey) -> APIKey:
    """Revoke a key for good; requests with it are refused from the next one on."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: APIKey) -> None:
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < API_KEY_TOUCH_INTERVAL:
        return
    APIKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now


def customer_create(
    *,
    merchant: Merchant,
    external_id: str,
    email: str = "",
    name: str = "",
    metadata: dict | None = None,
) -> Customer:
    if Customer.objects.filter(merchant=merchant, external_id=external_id).exists():
        raise _customer_exists(external_id)
    try:
        # A savepoint, so that losing a race to a concurrent create leaves the caller's
        # transaction usable.
        with transaction.atomic():
            return Customer.objects.create(
                merchant=merchant,
                external_id=external_id,
                email=email,
                name=name,
                metadata=metadata or {},
            )
    except IntegrityError:
        raise _customer_exists(external_id) from None


def _customer_exists(external_id: str) -> Conflict:
    return Conflict(
        f"A customer with external_id '{external_id}' already exists.", param="external_id"
    )
