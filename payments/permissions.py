from rest_framework.permissions import SAFE_METHODS, BasePermission

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


class IsSecretKeyOrCustomerReader(BasePermission):
    """
    A customer's own data (payments, subscriptions, invoices): a secret key may do
    everything, a customer session token may only read. Views using this must load through
    `request.user.reader_scope`, which narrows every read to the session's customer.
    """

    message = "This needs a secret key (sk_…); a customer session can only read."
    code = ErrorCode.PERMISSION_DENIED.value

    def has_permission(self, request, view):
        principal = request.user
        if not (principal and principal.is_authenticated):
            return False
        if principal.is_secret:
            return True
        return principal.customer is not None and request.method in SAFE_METHODS


class IsSecretKeyOrCustomer(BasePermission):
    """
    Self-service actions a customer may take on their own data (e.g. cancelling their own
    subscription) with a customer session token; a secret key may too. Like
    `IsSecretKeyOrCustomerReader`, views using this must load through
    `request.user.reader_scope` and pass `request.user.actor` to the service.
    """

    message = "This endpoint needs a secret key (sk_…) or a customer session."
    code = ErrorCode.PERMISSION_DENIED.value

    def has_permission(self, request, view):
        principal = request.user
        return bool(
            principal
            and principal.is_authenticated
            and (principal.is_secret or principal.customer is not None)
        )
