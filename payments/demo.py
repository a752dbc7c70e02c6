"""
Demo data for `manage.py seed_demo`: a merchant, its keys, a staff login and customers.

Seeding is idempotent. The demo keys and the staff password are derived from SECRET_KEY
(HMAC), so a second run prints the same working credentials without storing them anywhere;
`make run` writes a random SECRET_KEY to `.env` on first use, which keeps them private to
the installation.
"""

import hashlib
import hmac
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from payments import credentials, services, staff
from payments.models import APIKey, CreditTransaction, Customer, Merchant, PaymentEvent

DEMO_MERCHANT_ID = "mer_demo"
DEMO_MERCHANT_NAME = "Demo Cinema"
DEMO_STAFF_USERNAME = "admin"
# One staff user per back-office role (groups from payments.staff).
DEMO_ROLE_USERS = {"support": staff.SUPPORT, "finance": staff.FINANCE}
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
    # username -> password (None when changed since seeding) of the Support/Finance users
    role_users: dict[str, str | None] = field(default_factory=dict)


def demo_password(username: str = DEMO_STAFF_USERNAME) -> str:
    label = b"demo-staff-password"
    if username != DEMO_STAFF_USERNAME:
        label += b":" + username.encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), label, hashlib.sha256)
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
    staff.staff_roles_sync()  # the groups exist after migrate; made sure of here too
    password = _demo_staff(DEMO_STAFF_USERNAME, superuser=True)
    roles = {name: _demo_staff(name, group=group) for name, group in DEMO_ROLE_USERS.items()}
    return DemoCredentials(
        merchant, secret_key, publishable_key, DEMO_STAFF_USERNAME, password, roles
    )


def _demo_staff(username: str, *, superuser: bool = False, group: str = "") -> str | None:
    """A demo staff login; its password, or None when someone has changed it since."""
    password = demo_password(username)
    users = get_user_model().objects
    user = users.filter(username=username).first()
    if user is None:
        email = f"{username}@example.com"
        if superuser:
            user = users.create_superuser(username=username, email=email, password=password)
        else:
            user = users.create_user(
                username=username, email=email, password=password, is_staff=True
            )
    elif not user.check_password(password):
        password = None
    if group:
        user.groups.add(Group.objects.get(name=group))
    return password


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
