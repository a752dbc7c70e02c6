import itertools

import pytest
from django.db import transaction

from payments import services
from payments.errors import InvalidState
from payments.models import PaymentEvent, PaymentStatus
from payments.tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db

S = PaymentStatus
ALLOWED = {
    (S.PENDING, S.REQUIRES_CAPTURE),
    (S.PENDING, S.SUCCEEDED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.CANCELED),
    (S.REQUIRES_CAPTURE, S.SUCCEEDED),
    (S.REQUIRES_CAPTURE, S.CANCELED),
    (S.REQUIRES_CAPTURE, S.FAILED),
    (S.SUCCEEDED, S.PARTIALLY_REFUNDED),
    (S.SUCCEEDED, S.REFUNDED),
    (S.PARTIALLY_REFUNDED, S.PARTIALLY_REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}


@pytest.mark.parametrize("from_status, to_status", list(itertools.product(S.values, S.values)))
def test_every_transition_is_allowed_or_refused_as_the_brief_says(from_status, to_status):
    payment = PaymentFactory(status=from_status)

    with transaction.atomic():
        locked = services.payment_lock(payment.pk)
        if (from_status, to_status) in ALLOWED:
            services.payment_transition(payment=locked, to_status=to_status, source="task")
        else:
            with pytest.raises(InvalidState):
                services.payment_transition(payment=locked, to_status=to_status, source="task")

    payment.refresh_from_db()
    expected = to_status if (from_status, to_status) in ALLOWED else from_status
    assert payment.status == expected
    events = PaymentEvent.objects.filter(payment=payment)
    assert events.count() == (1 if (from_status, to_status) in ALLOWED else 0)


@pytest.mark.parametrize("terminal", [S.FAILED, S.CANCELED, S.REFUNDED])
def test_terminal_states_never_go_back(terminal):
    assert not services.PAYMENT_TRANSITIONS.get(terminal)


def test_a_transition_records_who_and_why_and_completes_the_payment():
    payment = PaymentFactory()

    with transaction.atomic():
        services.payment_transition(
            payment=services.payment_lock(payment.pk),
            to_status=S.FAILED,
            source="provider",
            actor="sandbox:evt_1",
            data={"why": "declined"},
            failure_code="card_declined",
        )

    payment.refresh_from_db()
    assert payment.failure_code == "card_declined"
    assert payment.completed_at is not None
    event = PaymentEvent.objects.get(payment=payment)
    assert (event.from_status, event.to_status, event.source, event.actor) == (
        "pending",
        "failed",
        "provider",
        "sandbox:evt_1",
    )
    assert event.data == {"why": "declined"}


@pytest.mark.django_db(transaction=True)
def test_a_transition_outside_a_transaction_is_refused():
    payment = PaymentFactory()

    with pytest.raises(RuntimeError):
        services.payment_transition(payment=payment, to_status=S.SUCCEEDED, source="task")
