"""
Staff roles in the back office: the "Support" and "Finance" groups, kept in line with this
file by every `migrate`, and the support refund limit.

- Support: sees everything; refunds up to `SUPPORT_REFUND_LIMITS` per payment.
- Finance: sees everything; refunds without a limit, captures and cancels, runs
  reconciliation and resolves its mismatches.

Permissions are named as strings ("app.codename"): a role may name another app's
permission without this app importing it. A permission that does not exist (yet) is
skipped, so the groups fill in as apps add theirs.
"""

from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

from payments import money

SUPPORT = "Support"
FINANCE = "Finance"
# Every model of these apps can be viewed by both roles.
BACK_OFFICE_APPS = ["payments", "billing", "subscriptions", "webhooks"]
ROLE_PERMISSIONS = {
    SUPPORT: ["payments.refund_payment"],
    FINANCE: [
        "payments.refund_payment",
        "payments.refund_payment_unlimited",
        "payments.cancel_payment",
        "payments.capture_payment",
        "billing.run_reconciliation",
        "billing.resolve_mismatch",
        "billing.add_reconciliationrun",
        "billing.view_reconciliationmismatch",
    ],
}


def staff_roles_sync(**kwargs) -> None:
    """Create or update the role groups (a `post_migrate` receiver; idempotent)."""
    using = kwargs.get("using", "default")
    # Apps later in INSTALLED_APPS have not had their permissions made yet when this runs.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    views = Permission.objects.using(using).filter(
        content_type__app_label__in=BACK_OFFICE_APPS, codename__startswith="view_"
    )
    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        group.permissions.set([*views, *_permissions(names, using)])


def _permissions(names: list[str], using: str) -> list[Permission]:
    found = []
    for name in names:
        app_label, codename = name.split(".")
        permission = (
            Permission.objects.using(using)
            .filter(content_type__app_label=app_label, codename=codename)
            .first()
        )
        if permission is not None:
            found.append(permission)
    return found


def refund_limit(currency: str) -> Decimal:
    """What Support may refund of one payment in `currency` (0 when not listed)."""
    limit = settings.SUPPORT_REFUND_LIMITS.get(currency)
    return Decimal(0) if limit is None else money.amount_parse(limit, currency)


def refund_refusal(user, amount: Decimal, currency: str) -> str:
    """Why `user` may not refund `amount` (empty when they may)."""
    if not user.has_perm("payments.refund_payment"):
        return "You do not have permission to refund payments."
    if user.has_perm("payments.refund_payment_unlimited"):
        return ""
    limit = refund_limit(currency)
    if amount > limit:
        shown = money.amount_format(limit, currency)
        return (
            f"The refund is above your limit of {shown} {currency} per payment: "
            "ask someone in Finance."
        )
    return ""
