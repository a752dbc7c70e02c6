from rest_framework.permissions import BasePermission

from payments.errors import ErrorCode


class IsSecretKey(BasePermission):
    """The default: the caller acts for its merchant with a secret key."""

    message = "This endpoint needs a secret key (sk_…)."
    code = ErrorCode.PERMISSION_DENIED.value

    def has_permission(self, request, view):
        principal = request.user
        return bool(principal and principal.is_authenticated and principal.is_secret)


class IsPublishableOrSecretKey(BasePermission):
    """Public merchant data (plans, client config): a publishable key is enough."""

    message = "This endpoint needs an API key."
    code = ErrorCode.PERMISSION_DENIED.value

    def has_permission(self, request, view):
        principal = request.user
        return bool(principal and principal.is_authenticated and principal.customer is None)
