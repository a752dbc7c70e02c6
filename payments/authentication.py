"""`Authorization: Bearer <key or customer session token>` for the API."""

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from payments import customer_tokens, selectors, services
from payments.errors import ErrorCode
from payments.models import APIKey, Customer, Merchant


@dataclass(frozen=True)
class ApiPrincipal:
    """
    Who is calling: always one merchant in one mode, either through one of its API keys
    or through a customer session token that one of its secret keys minted for a customer.
    """

    merchant: Merchant
    livemode: bool
    # What timeline events and logs record as the acting party: the key id, or the
    # customer id for a customer session.
    actor: str
    api_key: APIKey | None = None
    customer: Customer | None = None

    is_authenticated = True
    is_anonymous = False

    @classmethod
    def for_api_key(cls, api_key: APIKey) -> "ApiPrincipal":
        return cls(
            merchant=api_key.merchant,
            livemode=api_key.livemode,
            actor=api_key.pk,
            api_key=api_key,
        )

    @classmethod
    def for_customer(cls, customer: Customer, *, livemode: bool) -> "ApiPrincipal":
        return cls(
            merchant=customer.merchant, livemode=livemode, actor=customer.pk, customer=customer
        )

    @property
    def is_secret(self) -> bool:
        return self.api_key is not None and self.api_key.is_secret

    @property
    def scope(self) -> dict:
        """
        What loaders of merchant-wide data are filtered by: merchant and mode.

        A customer session has no merchant-wide scope. Views it may reach (see
        `IsSecretKeyOrCustomerReader`) must load through `reader_scope`; one that forgot
        fails loudly here instead of showing the customer the whole merchant.
        """
        if self.customer is not None:
            raise RuntimeError("A customer session can only be scoped with reader_scope.")
        return {"merchant": self.merchant, "livemode": self.livemode}

    @property
    def reader_scope(self) -> dict:
        """
        What loaders of data a customer may read are filtered by: merchant, mode and the
        customer (None for a key, which reads every customer's data of its merchant).
        """
        return {"merchant": self.merchant, "livemode": self.livemode, "customer": self.customer}

    @property
    def pk(self) -> str:
        # Throttles and logs key their records on the credential, not the merchant.
        if self.api_key is not None:
            return self.api_key.pk
        return f"customer:{self.customer.pk}"


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword or len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Authorization header must be 'Bearer <api key>'.",
                code=ErrorCode.INVALID_API_KEY.value,
            )
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raw_key = ""
        if customer_tokens.looks_like_customer_token(raw_key):
            return self._authenticate_customer(raw_key)
        api_key = selectors.api_key_get_by_raw_key(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid API key provided.", code=ErrorCode.INVALID_API_KEY.value
            )
        if not api_key.is_active:
            raise exceptions.AuthenticationFailed(
                "This API key has been revoked.", code=ErrorCode.INVALID_API_KEY.value
            )
        self._check_merchant_active(api_key.merchant)
        services.api_key_touch(api_key=api_key)
        return ApiPrincipal.for_api_key(api_key), api_key

    def _authenticate_customer(self, token: str):
        invalid = exceptions.AuthenticationFailed(
            "This customer session is invalid or has expired.",
            code=ErrorCode.INVALID_API_KEY.value,
        )
        try:
            claims = customer_tokens.customer_token_read(token)
        except customer_tokens.CustomerTokenInvalid:
            raise invalid from None
        # Deleting the customer ends its sessions; the merchant named in the claims must
        # still be the one that owns it.
        customer = selectors.customer_get_for_session(
            customer_id=claims.customer_id, merchant_id=claims.merchant_id
        )
        if customer is None:
            raise invalid
        self._check_merchant_active(customer.merchant)
        return ApiPrincipal.for_customer(customer, livemode=claims.livemode), claims

    @staticmethod
    def _check_merchant_active(merchant: Merchant) -> None:
        if not merchant.is_active:
            raise exceptions.PermissionDenied(
                "This merchant account is disabled.", code=ErrorCode.ACCOUNT_DISABLED.value
            )

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) when credentials are missing or wrong.
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "A secret key `sk_…`, a publishable key `pk_…` where stated, or a customer "
                "session token (a JWT from `POST /api/v1/customer_sessions`) where stated."
            ),
        }
