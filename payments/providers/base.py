"""
The one interface every provider adapter implements, and the small dataclasses that cross
it. Adapters take and return these, never SDK objects, so the rest of the code does not
know which provider it is talking to.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class ReceiptItem:
    description: str
    quantity: Decimal
    amount: Decimal  # price of one unit, in major units
    vat_code: int
    payment_subject: str
    payment_mode: str


@dataclass(frozen=True)
class Receipt:
    """A fiscal receipt (Russia's 54-FZ) the provider registers with the payment."""

    items: tuple[ReceiptItem, ...]
    customer_email: str = ""
    customer_phone: str = ""
    tax_system_code: int | None = None


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: str
    amount: Decimal
    currency: str
    capture: bool
    return_url: str  # where the provider sends the buyer afterwards: our pay link
    description: str = ""
    customer_email: str = ""
    save_payment_method: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    receipt: Receipt | None = None


@dataclass(frozen=True)
class CheckoutResult:
    provider_payment_id: str
    checkout_id: str
    checkout_url: str


@dataclass(frozen=True)
class ProviderPayment:
    """A provider's view of a payment, with the status in our vocabulary."""

    provider_payment_id: str
    reference: str  # our payment id, as we gave it to the provider
    status: str  # pending | requires_capture | succeeded | failed | canceled
    amount: Decimal
    currency: str
    amount_captured: Decimal = Decimal(0)
    amount_refunded: Decimal = Decimal(0)
    payment_method_id: str = ""
    payment_method_types: tuple[str, ...] = ()
    card_brand: str = ""
    card_last4: str = ""
    failure_code: str = ""
    failure_message: str = ""
    # The provider's customer the method is saved under, where it needs one (Stripe).
    provider_customer_id: str = ""
    # When the provider made its record (set by lists, for reconciliation; None elsewhere).
    created_at: datetime | None = None


@dataclass(frozen=True)
class ProviderRefund:
    provider_refund_id: str
    provider_payment_id: str
    status: str  # pending | succeeded | failed | canceled
    amount: Decimal
    currency: str
    failure_reason: str = ""
    # Our refund id, where the provider keeps it for us (lets a webhook that outruns our
    # own record of the provider's id still find the refund).
    reference: str = ""
    # When the provider made its record (set by lists, for reconciliation; None elsewhere).
    created_at: datetime | None = None


@dataclass(frozen=True)
class SavedMethodCharge:
    """An off-session charge of a saved payment method (subscription renewals)."""

    payment_id: str  # our payment, created for this charge
    amount: Decimal
    currency: str
    payment_method_id: str
    provider_customer_id: str = ""
    description: str = ""
    # A renewal is a sale like the first one: it needs its fiscal receipt too.
    receipt: Receipt | None = None


@dataclass(frozen=True)
class ProviderEvent:
    """A verified webhook, reduced to what we act on."""

    event_id: str
    type: str
    payment: ProviderPayment | None = None
    refund: ProviderRefund | None = None


class ProviderError(Exception):
    """A provider call failed. `transient` errors are worth retrying; others are final."""

    transient = False

    def __init__(self, message: str, *, code: str = "provider_error"):
        super().__init__(message)
        self.message = message
        self.code = code


class ProviderTransientError(ProviderError):
    transient = True


class ProviderDeclined(ProviderError):
    """The provider refused on the merits (bad request, card declined): do not retry."""


class WebhookVerificationError(Exception):
    """The request is not provably from the provider (signature, age, source)."""


class Provider(Protocol):
    name: str

    def checkout_create(
        self, request: CheckoutRequest, *, idempotency_key: str
    ) -> CheckoutResult: ...

    def payment_retrieve(self, provider_payment_id: str) -> ProviderPayment: ...

    def payment_capture(
        self, provider_payment_id: str, amount: Decimal, *, idempotency_key: str
    ) -> ProviderPayment: ...

    def payment_cancel(
        self, provider_payment_id: str, *, idempotency_key: str, checkout_id: str = ""
    ) -> ProviderPayment:
        """
        Cancel (void) the payment; when the provider has no payment yet, only an unpaid
        hosted checkout (`checkout_id`), close that so the buyer can no longer pay it.
        """
        ...

    def refund_create(
        self,
        provider_payment_id: str,
        amount: Decimal,
        currency: str,
        *,
        idempotency_key: str,
        reason: str = "",
        reference: str = "",
    ) -> ProviderRefund:
        """Refund `amount`; `reference` (our refund id) is kept by providers that can."""
        ...

    def charge_saved_method(
        self, charge: SavedMethodCharge, *, idempotency_key: str
    ) -> ProviderPayment:
        """Charge without the buyer present. A decline is returned as a failed payment."""
        ...

    def webhook_verify(self, body: bytes, headers: Mapping[str, str], source_ip: str) -> dict:
        """The request's payload, if it provably comes from the provider."""
        ...

    def webhook_identify(self, payload: dict) -> tuple[str, str]:
        """
        The event id and type of a verified payload, without any network call: the
        request is stored and answered on this alone; `webhook_event` runs later.
        """
        ...

    def webhook_event(self, payload: dict) -> ProviderEvent:
        """What a verified (and stored) payload says; runs again on reprocessing."""
        ...

    def payments_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderPayment]:
        """
        Every payment the provider made in [created_gte, created_lt), with `created_at`
        set, in the provider's own order. A generator that fetches one page at a time, so
        a caller walking a million records holds one page, never the list (reconciliation).
        """
        ...

    def refunds_list(
        self, *, created_gte: datetime, created_lt: datetime
    ) -> Iterator[ProviderRefund]:
        """Every refund the provider made in [created_gte, created_lt); like `payments_list`."""
        ...
