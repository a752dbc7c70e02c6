import pytest
import time_machine

from payments.models import Merchant
from subscriptions.tests.flows import plan_create


@pytest.fixture(autouse=True)
def _sandbox_webhooks_by_hand(settings):
    # The sandbox's own sending (a task) meets a closed port at once; the tests post its
    # webhooks themselves (`deliver_sandbox_webhooks`), when they choose to.
    settings.SANDBOX_WEBHOOK_URL = "http://127.0.0.1:9/webhooks/sandbox"


@pytest.fixture
def clock():
    """The test's clock, starting at a fixed moment; move it with `clock.shift(...)`."""
    with time_machine.travel("2026-01-31 10:00:00+00:00", tick=False) as traveller:
        yield traveller


@pytest.fixture
def premium(merchant: Merchant):
    return plan_create(merchant, "premium", "599.00", name="Premium")
