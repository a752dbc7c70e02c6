import pytest

from billing.services import invoice_on_outcome
from payments import outcomes


@pytest.fixture(autouse=True)
def _payment_callbacks_only(monkeypatch):
    """
    These tests count the callbacks payment outcomes cause. Invoicing reacts to the same
    outcomes with `invoice.paid` events of its own (tested in billing and subscriptions);
    here it would only double every count, so it is left out.
    """
    monkeypatch.setattr(
        outcomes,
        "_listeners",
        [listener for listener in outcomes._listeners if listener is not invoice_on_outcome],
    )
