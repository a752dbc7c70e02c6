"""
Payment providers. Each adapter lives in its own module and is the only place that talks
to that provider's SDK; this package's root says which providers this deployment has on.
"""

from django.conf import settings

SANDBOX = "sandbox"
STRIPE = "stripe"
YOOKASSA = "yookassa"
# Pays from the customer's prepaid credit balance: no outside provider, settled at once.
CREDITS = "credits"
ALL_PROVIDERS = (SANDBOX, STRIPE, YOOKASSA, CREDITS)


def provider_enabled(name: str) -> bool:
    """A provider is on when its credentials are set; the sandbox unless disabled."""
    if name == SANDBOX:
        return settings.SANDBOX_ENABLED
    if name == STRIPE:
        return bool(settings.STRIPE_SECRET_KEY)
    if name == YOOKASSA:
        return bool(settings.YOOKASSA_SHOP_ID and settings.YOOKASSA_SECRET_KEY)
    return name == CREDITS


def provider_serves_mode(name: str, livemode: bool) -> bool:
    """Credits are the merchant's own books, valid in either mode; others follow their keys."""
    return name == CREDITS or provider_livemode(name) == livemode


def provider_livemode(name: str) -> bool:
    """
    Whether the provider's configured credentials move real money. The sandbox never
    does; Stripe and YooKassa say so in their key prefixes (`sk_live_…`, `live_…`).
    """
    if name == STRIPE:
        return settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))
    if name == YOOKASSA:
        return settings.YOOKASSA_SECRET_KEY.startswith("live_")
    return False


def enabled_providers() -> list[str]:
    return [name for name in ALL_PROVIDERS if provider_enabled(name)]


def get_provider(name: str):
    """The adapter for `name`. Imported lazily: only a deployment using a provider loads its SDK."""
    if name == SANDBOX:
        from payments.providers.sandbox import SandboxProvider

        return SandboxProvider()
    if name == STRIPE:
        from payments.providers.stripe import StripeProvider

        return StripeProvider()
    if name == YOOKASSA:
        from payments.providers.yookassa import YooKassaProvider

        return YooKassaProvider()
    raise LookupError(f"No adapter for provider '{name}'.")
