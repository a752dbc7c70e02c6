"""
The edge where every error becomes the contract's shape:

    {"error": {"type": "...", "code": "...", "message": "...", "param": "field-or-null"}}

`api_exception_handler` serves DRF views; `json_page_not_found` and `json_server_error`
serve Django's own 404/500 for paths outside DRF (an unknown `/api/...` URL, say).
"""

import logging
import sys

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from django.views.defaults import bad_request, page_not_found, server_error
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from payments.errors import ErrorCode, PaymentError

logger = logging.getLogger("payments.api")

# DRF's generic validation codes collapse into ours; any other code a serializer raises
# on purpose (e.g. "amount_too_small") is passed through as it is.
_MISSING_CODES = {"required", "null", "blank"}
_GENERIC_INVALID_CODES = {
    "invalid", "invalid_choice", "max_length", "min_length", "max_value", "min_value",
    "max_digits", "max_decimal_places", "max_whole_digits", "not_a_list", "not_a_dict",
    "empty", "date", "datetime", "parse_error", "unique", "does_not_exist", "incorrect_type",
    "no_match", "make_aware", "overflow", "max_string_length", "not_a_number",
}  # fmt: skip
_STATUS_CODES = {
    exceptions.NotAuthenticated: ErrorCode.AUTHENTICATION_REQUIRED,
    exceptions.AuthenticationFailed: ErrorCode.INVALID_API_KEY,
    exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    exceptions.NotFound: ErrorCode.RESOURCE_MISSING,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.ParseError: ErrorCode.PARSE_ERROR,
    exceptions.Throttled: ErrorCode.RATE_LIMITED,
}


# Exceptions that mean a service we depend on did not answer, not that the request or our
# code is wrong: the client may retry the same request later (503, never a 500).
_DEPENDENCY_ERRORS = (
    (DatabaseOperationalError, "database"),
    (DatabaseInterfaceError, "database"),
    (BrokerOperationalError, "broker"),
    (RedisConnectionError, "cache"),
    (RedisTimeoutError, "cache"),
)


def dependency_unavailable(exc: BaseException | None) -> str | None:
    """The dependency `exc` says is unreachable ("database", "cache", "broker"), or None."""
    return next((name for cls, name in _DEPENDENCY_ERRORS if isinstance(exc, cls)), None)


def service_unavailable_body(dependency: str) -> dict:
    # The dependency is named (as /health/ready does); its host and error stay in the log.
    return error_body(
        ErrorCode.SERVICE_UNAVAILABLE,
        f"A service this request needs ({dependency}) is unavailable. Retry later.",
    )


def error_body(code: ErrorCode | str, message: str, param: str | None = None, error_type=None):
    if isinstance(code, ErrorCode):
        error_type = error_type or code.error_type
        code = code.value
    return {
        "error": {
            "type": getattr(error_type, "value", error_type),
            "code": code,
            "message": message,
            "param": param,
        }
    }


def request_too_large_body() -> dict:
    return error_body(ErrorCode.REQUEST_TOO_LARGE, "The request body is too large.")


def api_exception_handler(exc, context):
    if isinstance(exc, PaymentError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.param), status=exc.status)

    if isinstance(exc, RequestDataTooBig):
        set_rollback()
        return Response(request_too_large_body(), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("The requested resource does not exist.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    dependency = dependency_unavailable(exc)
    if dependency is not None:
        request = context.get("request")
        logger.warning(
            "%s %s: %s unavailable: %s: %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
            dependency,
            type(exc).__name__,
            exc,
        )
        set_rollback()
        return Response(service_unavailable_body(dependency), status=503)

    if not isinstance(exc, exceptions.APIException):
        request = context.get("request")
        logger.exception(
            "Unhandled error in %s %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
        )
        set_rollback()
        return Response(
            error_body(ErrorCode.INTERNAL_ERROR, "An internal error occurred. It has been logged."),
            status=500,
        )

    # DRF's handler sets WWW-Authenticate and Retry-After and rolls back; we keep those
    # headers and replace only the body.
    response = drf_exception_handler(exc, context)
    response.data = _api_exception_body(exc)
    return response


def _api_exception_body(exc: exceptions.APIException) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        param, detail = _first_error(exc.detail)
        raw_code = getattr(detail, "code", None) or "invalid"
        if raw_code in _MISSING_CODES:
            code = ErrorCode.PARAMETER_MISSING.value
        elif raw_code in _GENERIC_INVALID_CODES:
            code = ErrorCode.PARAMETER_INVALID.value
        else:
            code = raw_code
        if param == api_settings.NON_FIELD_ERRORS_KEY:
            param = None
        return error_body(code, str(detail), param, ErrorCode.PARAMETER_INVALID.error_type)

    error_code = next((code for cls, code in _STATUS_CODES.items() if isinstance(exc, cls)), None)
    detail_code = getattr(exc.detail, "code", None)
    if detail_code in ErrorCode._value2member_map_:
        # A deliberate code of ours, e.g. account_disabled on a PermissionDenied.
        error_code = ErrorCode(detail_code)
    if error_code is None:
        error_code = (
            ErrorCode.INTERNAL_ERROR if exc.status_code >= 500 else ErrorCode.PARAMETER_INVALID
        )
    message = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else str(exc)
    return error_body(error_code, message)


def _first_error(detail, path: str = ""):
    """The first leaf of a (possibly nested) DRF error structure, with its dotted path."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)) and value:
                return _first_error(value, f"{path}.{index}" if path else str(index))
            if not isinstance(value, (dict, list)):
                return path or None, value
    return path or None, detail


def _wants_json(request) -> bool:
    return request.path.startswith(("/api/", "/webhooks/", "/health/"))


def json_page_not_found(request, exception=None):
    if _wants_json(request):
        return JsonResponse(
            error_body(ErrorCode.RESOURCE_MISSING, f"Unrecognized request URL: {request.path}"),
            status=404,
        )
    return page_not_found(request, exception)


def json_server_error(request):
    # Django calls this while handling the uncaught exception (and has logged it).
    dependency = dependency_unavailable(sys.exc_info()[1])
    if dependency is not None and _wants_json(request):
        return JsonResponse(service_unavailable_body(dependency), status=503)
    if _wants_json(request):
        return JsonResponse(
            error_body(ErrorCode.INTERNAL_ERROR, "An internal error occurred. It has been logged."),
            status=500,
        )
    return server_error(request)


def json_bad_request(request, exception=None):
    if _wants_json(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(request_too_large_body(), status=413)
        return JsonResponse(error_body(ErrorCode.PARAMETER_INVALID, "Bad request."), status=400)
    return bad_request(request, exception)
