"""
A Support agent in a real browser (headless Chromium): logs in to the admin, finds a
payment by its order id, refunds part of it through the form and its confirmation, and
sees the refund in the payment's timeline, settled by the sandbox's webhook.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from payments.models import Refund
from payments.tests.test_sandbox_flow import Buyer, create_payment

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    return live_server


def test_support_refunds_part_of_a_payment_in_the_admin(live, api, browser_page):
    payment = create_payment(api, order_id="order-4711", description="Premium plan")
    Buyer().pay(payment["checkout_url"], "4242 4242 4242 4242")
    agent = get_user_model().objects.create_user(
        username="sam", password="correct-horse-9", is_staff=True
    )
    agent.groups.add(Group.objects.get(name="Support"))
    page = browser_page

    page.goto(f"{live.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "sam")
    page.fill("#id_password", "correct-horse-9")
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("sam")

    page.goto(f"{live.url}/admin/payments/payment/")
    page.fill("#searchbar", "order-4711")
    page.press("#searchbar", "Enter")
    page.click(f"a:has-text('{payment['id']}')")
    page.click(".object-tools a:has-text('Refund')")
    expect(page.locator("#id_amount")).to_have_value("599.00")
    page.fill("#id_amount", "150.00")
    page.fill("#id_reason", "Two days without service")
    page.click("input[name=review]")
    expect(page.locator(".confirm-question")).to_contain_text("Refund 150.00 RUB")
    page.click("input[name=confirm]")

    expect(page.locator(".messagelist")).to_contain_text("Refund re_")
    page.reload()  # the sandbox's refund webhook has settled it by now
    timeline = page.locator("#events-group")
    expect(timeline).to_contain_text("refund_requested")
    expect(timeline).to_contain_text("admin:sam")
    expect(timeline).to_contain_text("partially_refunded")
    refund = Refund.objects.get()
    assert (refund.amount, refund.status, refund.actor) == (150, "succeeded", "admin:sam")
