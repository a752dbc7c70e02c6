"""`Authorization: Bearer <key>` for the API."""

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from payments import selectors, services
from payments.errors import ErrorCode
from payments.models import APIKey, Customer, Merchant


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: always a merchant, through one of its keys."""

    merchant: Merchant
    api_key: APIKey
    customer: Customer | None = None

    is_authenticated = True
    is_anonymous = False

    @property
    def is_secret(self) -> bool:
        return self.customer is None and self.api_key.is_secret

    @property
    def livemode(self) -> bool:
        return self.api_key.livemode

    @property
    def scope(self) -> dict:
        """What every loader of the caller's data is filtered by: merchant and mode."""
        return {"merchant": self.merchant, "livemode": self.livemode}

    @property
    def pk(self) -> str:
        # Throttles and logs key their records on the credential, not the merchant.
        return self.api_key.pk


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
        api_key = selectors.api_key_get_by_raw_key(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "Invalid API key provided.", code=ErrorCode.INVALID_API_KEY.value
            )
        if not api_key.is_active:
            raise exceptions.AuthenticationFailed(
                "This API key has been revoked.", code=ErrorCode.INVALID_API_KEY.value
            )
        if not api_key.merchant.is_active:
            raise exceptions.PermissionDenied(
                "This merchant account is disabled.", code=ErrorCode.ACCOUNT_DISABLED.value
            )
        services.api_key_touch(api_key=api_key)
        return ApiPrincipal(merchant=api_key.merchant, api_key=api_key), api_key

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
            "description": "A secret key `sk_…`, or a publishable key `pk_…` where stated.",
        }
