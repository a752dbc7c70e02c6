"""
The one domain error type of the platform.

Services and selectors raise `PaymentError` (or a subclass) carrying an `ErrorCode`; the
API edge (`payments.exception_handlers`) turns every error into the contract's shape:
`{"error": {"type", "code", "message", "param"}}`. Nothing below the edge knows about HTTP
beyond the status each code maps to.
"""

from enum import StrEnum


class ErrorType(StrEnum):
    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    IDEMPOTENCY = "idempotency_error"
    RATE_LIMIT = "rate_limit_error"
    PROVIDER = "provider_error"
    API = "api_error"


class ErrorCode(StrEnum):
    """Every error code the API can answer with, and the HTTP status and type it implies."""

    def __new__(cls, value: str, status: int, error_type: ErrorType):
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.error_type = error_type
        return member

    # 400
    PARAMETER_INVALID = ("parameter_invalid", 400, ErrorType.INVALID_REQUEST)
    PARAMETER_MISSING = ("parameter_missing", 400, ErrorType.INVALID_REQUEST)
    PARAMETER_UNKNOWN = ("parameter_unknown", 400, ErrorType.INVALID_REQUEST)
    PARSE_ERROR = ("parse_error", 400, ErrorType.INVALID_REQUEST)
    PROVIDER_NOT_ENABLED = ("provider_not_enabled", 400, ErrorType.INVALID_REQUEST)
    CARD_NUMBER_REFUSED = ("card_number_refused", 400, ErrorType.INVALID_REQUEST)
    # 401 / 403
    AUTHENTICATION_REQUIRED = ("authentication_required", 401, ErrorType.AUTHENTICATION)
    INVALID_API_KEY = ("invalid_api_key", 401, ErrorType.AUTHENTICATION)
    PERMISSION_DENIED = ("permission_denied", 403, ErrorType.PERMISSION)
    ACCOUNT_DISABLED = ("account_disabled", 403, ErrorType.PERMISSION)
    # 404 / 405 / 406 / 413 / 415
    RESOURCE_MISSING = ("resource_missing", 404, ErrorType.INVALID_REQUEST)
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405, ErrorType.INVALID_REQUEST)
    NOT_ACCEPTABLE = ("not_acceptable", 406, ErrorType.INVALID_REQUEST)
    REQUEST_TOO_LARGE = ("request_too_large", 413, ErrorType.INVALID_REQUEST)
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", 415, ErrorType.INVALID_REQUEST)
    # 409
    RESOURCE_EXISTS = ("resource_exists", 409, ErrorType.INVALID_REQUEST)
    PAYMENT_INVALID_STATE = ("payment_invalid_state", 409, ErrorType.INVALID_REQUEST)
    ORDER_ALREADY_PAID = ("order_payment_exists", 409, ErrorType.INVALID_REQUEST)
    INSUFFICIENT_BALANCE = ("insufficient_balance", 409, ErrorType.INVALID_REQUEST)
    SUBSCRIPTION_INVALID_STATE = ("subscription_invalid_state", 409, ErrorType.INVALID_REQUEST)
    SUBSCRIPTION_EXISTS = ("subscription_exists", 409, ErrorType.INVALID_REQUEST)
    REFUND_EXCEEDS_REFUNDABLE = ("refund_exceeds_refundable", 400, ErrorType.INVALID_REQUEST)
    IDEMPOTENCY_KEY_IN_USE = ("idempotency_key_in_use", 409, ErrorType.IDEMPOTENCY)
    # 422
    IDEMPOTENCY_KEY_REUSED = ("idempotency_key_reused", 422, ErrorType.IDEMPOTENCY)
    # 429
    RATE_LIMITED = ("rate_limited", 429, ErrorType.RATE_LIMIT)
    # 5xx
    INTERNAL_ERROR = ("internal_error", 500, ErrorType.API)
    PROVIDER_UNAVAILABLE = ("provider_unavailable", 502, ErrorType.PROVIDER)
    SERVICE_UNAVAILABLE = ("service_unavailable", 503, ErrorType.API)


class PaymentError(Exception):
    """A failure the caller can understand: it carries a code, a message and the field."""

    default_code: ErrorCode = ErrorCode.PARAMETER_INVALID

    def __init__(self, message: str, *, code: ErrorCode | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    @property
    def status(self) -> int:
        return self.code.status


class ValidationFailed(PaymentError):
    default_code = ErrorCode.PARAMETER_INVALID


class NotFound(PaymentError):
    default_code = ErrorCode.RESOURCE_MISSING

    def __init__(self, resource: str, object_id: str, *, param: str | None = None):
        super().__init__(f"No such {resource}: '{object_id}'.", param=param)
        self.resource = resource


class Conflict(PaymentError):
    default_code = ErrorCode.RESOURCE_EXISTS


class InvalidState(PaymentError):
    default_code = ErrorCode.PAYMENT_INVALID_STATE


class ProviderUnavailable(PaymentError):
    default_code = ErrorCode.PROVIDER_UNAVAILABLE
