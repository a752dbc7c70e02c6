"""
The demo's plans and billing details, on top of the payments demo (`payments.demo`): the
online-cinema case, three monthly plans in roubles.
"""

from django.db import transaction

from billing.models import BillingProfile
from payments.demo import DEMO_MERCHANT_ID, DEMO_MERCHANT_NAME, DemoCredentials, demo_seed
from payments.models import Merchant
from subscriptions import services
from subscriptions.models import Plan

DEMO_PLANS = [
    ("basic", "Basic", "299.00", "HD on one screen"),
    ("premium", "Premium", "599.00", "4K on two screens"),
    ("family", "Family", "899.00", "4K on four screens, kids' profiles"),
]


@transaction.atomic
def demo_seed_all() -> DemoCredentials:
    # The profile first, so the demo's own invoices are issued with its details.
    merchant, _ = Merchant.objects.get_or_create(
        pk=DEMO_MERCHANT_ID, defaults={"name": DEMO_MERCHANT_NAME}
    )
    BillingProfile.objects.get_or_create(
        merchant=merchant,
        defaults={
            "legal_name": "Demo Cinema LLC",
            "address": "1 Example Street, Moscow",
            "tax_id": "7700000000",
            "email": "billing@cinema.example",
            "footer": "Thank you for watching with us.",
        },
    )
    demo = demo_seed()
    demo_plans_seed(demo.merchant)
    return demo


def demo_plans_seed(merchant: Merchant) -> list[Plan]:
    plans = []
    for code, name, amount, description in DEMO_PLANS:
        plan = Plan.objects.filter(merchant=merchant, code=code).first()
        if plan is None:
            plan = services.plan_create(
                merchant=merchant,
                code=code,
                name=name,
                amount=amount,
                currency="RUB",
                interval="month",
                description=description,
            )
        plans.append(plan)
    return plans
