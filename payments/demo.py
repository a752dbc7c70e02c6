"""
Demo data for `manage.py seed_demo`: a merchant, its keys, a staff login and customers.

Seeding is idempotent. The demo keys and the staff password are derived from SECRET_KEY
(HMAC), so a second run prints the same working credentials without storing them anywhere;
`make run` writes a random SECRET_KEY to `.env` on first use, which keeps them private to
the installation.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from payments import credentials, services
from payments.models import APIKey, CreditTransaction, Customer, Merchant, PaymentEvent

DEMO_MERCHANT_ID = "mer_demo"
DEMO_MERCHANT_NAME = "Demo Cinema"
DEMO_STAFF_USERNAME = "admin"
DEMO_CUSTOMERS = [
    ("demo-user-1", "alice@example.com", "Alice Example"),
    ("demo-user-2", "bob@example.com", "Bob Example"),
    ("demo-user-3", "carol@example.com", "Carol Example"),
]


@dataclass
class DemoCredentials:
    merchant: Merchant
    secret_key: str
    publishable_key: str
    staff_username: str
    staff_password: str | None  # None when someone has changed it since seeding


def demo_password() -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), b"demo-staff-password", hashlib.sha256)
    return "demo-" + digest.hexdigest()[:16]


@transaction.atomic
def demo_seed() -> DemoCredentials:
    merchant, _ = Merchant.objects.get_or_create(
        pk=DEMO_MERCHANT_ID, defaults={"name": DEMO_MERCHANT_NAME}
    )
    secret_key = _demo_key(merchant, APIKey.Kind.SECRET)
    publishable_key = _demo_key(merchant, APIKey.Kind.PUBLISHABLE)
    for external_id, email, name in DEMO_CUSTOMERS:
        Customer.objects.get_or_create(
            merchant=merchant, external_id=external_id, defaults={"email": email, "name": name}
        )
    _demo_money(merchant)
    password = demo_password()
    user = get_user_model().objects.filter(username=DEMO_STAFF_USERNAME).first()
    if user is None:
        get_user_model().objects.create_superuser(
            username=DEMO_STAFF_USERNAME, email="admin@example.com", password=password
        )
    elif not user.check_password(password):
        password = None
    return DemoCredentials(merchant, secret_key, publishable_key, DEMO_STAFF_USERNAME, password)


def _demo_key(merchant: Merchant, kind: str) -> str:
    """The installation's derived demo key; a fresh random one if staff revoked it."""
    raw_key = credentials.key_derive(kind, False, secret=settings.SECRET_KEY, label=merchant.pk)
    existing = APIKey.objects.filter(key_hash=credentials.key_hash(raw_key)).first()
    if existing is None:
        services.api_key_create(merchant=merchant, kind=kind, name="demo", raw_key=raw_key)
    elif not existing.is_active:
        _, raw_key = services.api_key_create(merchant=merchant, kind=kind, name="demo (reissued)")
    return raw_key


def _demo_money(merchant: Merchant) -> None:
    """A little history on our own books (credits): a grant, a payment, a partial refund."""
    alice = Customer.objects.get(merchant=merchant, external_id=DEMO_CUSTOMERS[0][0])
    if CreditTransaction.objects.filter(customer=alice).exists():
        return
    services.customer_credit_change(
        customer=alice,
        kind=CreditTransaction.Type.GRANT,
        amount="1000.00",
        currency="RUB",
        description="Welcome bonus",
        source=PaymentEvent.Source.ADMIN,
        actor="seed_demo",
    )
    payment = services.payment_create(
        merchant=merchant,
        amount="299.00",
        currency="RUB",
        provider="credits",
        customer=alice,
        description="Basic plan, paid with credits",
        actor="seed_demo",
    )
    services.refund_create(
        payment=payment, amount="99.00", reason="goodwill", source=PaymentEvent.Source.ADMIN
    )
