"""
What the OpenAPI schema says about every operation, in one place.

Every error the API answers, 4xx or 5xx, has one shape (`Error` below). Which statuses an
operation can answer follows from what it is, so a drf-spectacular postprocessing hook
documents them all at once instead of every view repeating the same list:

- any operation: 400 bad query or body, 401 no or bad credentials, 403 the credential may
  not do this, 404 an unknown object (or `?format=`), 429 throttled, 503 a dependency down;
- one that takes a body: 413 too large, 415 not JSON;
- one that takes `Idempotency-Key`: 409 the first request with the key is still running,
  422 the key was used with another request; its successful answer may be a replay.

A view adds what only it can answer (a state conflict, a provider outage) with `errors()`.
"""

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from payments.errors import ErrorType
from payments.fields import BlankAsNullField
from payments.idempotency import HEADER as IDEMPOTENCY_HEADER_NAME
from payments.idempotency import MAX_KEY_LENGTH, REPLAYED_HEADER

ERROR_COMPONENT = "Error"
ERROR_REF = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error, 4xx and 5xx, has this shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": [t.value for t in ErrorType]},
                "code": {
                    "type": "string",
                    "description": "Machine-readable, e.g. `parameter_invalid`.",
                    "example": "parameter_invalid",
                },
                "message": {"type": "string", "description": "For people, not for parsing."},
                "param": {
                    "type": "string",
                    "nullable": True,
                    "description": "The parameter at fault (a dotted path into the body), "
                    "or a header name such as `Idempotency-Key`.",
                },
            },
            "required": ["type", "code", "message", "param"],
        }
    },
    "required": ["error"],
}

ERROR_DESCRIPTIONS = {
    400: "Invalid input: the parameter at fault is named in `param`.",
    401: "No credential, or one that is unknown, revoked or expired.",
    403: "The credential may not do this (e.g. a publishable key), or the account is disabled.",
    404: "No such object for this merchant, or an unknown `format`.",
    409: "The object's state does not allow this, or a request with this "
    "`Idempotency-Key` is still running.",
    413: "The request body is too large.",
    415: "The request body is not JSON.",
    422: "This `Idempotency-Key` was used with a different request.",
    429: "Too many requests: retry after `Retry-After` seconds.",
    502: "The payment provider could not be reached or failed; retry later.",
    503: "A service this request needs is unavailable; retry later.",
}
ALWAYS = (400, 401, 403, 404, 429, 503)
WITH_BODY = (413, 415)
WITH_IDEMPOTENCY_KEY = (409, 422)

RESPONSE_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": "How to authenticate: `Bearer`.",
        }
    },
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds to wait before retrying.",
        }
    },
}
REPLAYED_HEADER_SCHEMA = {
    "schema": {"type": "string", "enum": ["true"]},
    "description": "Present when this is the stored answer to an earlier request with the "
    "same `Idempotency-Key` and body, replayed byte for byte.",
}

IDEMPOTENCY_HEADER = OpenApiParameter(
    IDEMPOTENCY_HEADER_NAME,
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        # Visible ASCII, no surrounding blanks: what any client can send in a header.
        "pattern": r"^[!-~]([ -~]*[!-~])?$",
    },
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "A unique key (a UUID, say) that makes retries safe: a retry with the same key and "
        "body replays the first response (kept at least 24 h); the same key with another "
        "body is a 422."
    ),
)


def errors(*statuses: int) -> dict:
    """Error responses an operation answers beyond those every operation does."""
    return {status: _error_response(status) for status in statuses}


def _error_response(status: int) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR_REF, description=ERROR_DESCRIPTIONS[status])


def postprocess_error_responses(result, generator, request, public):
    """drf-spectacular hook: the `Error` component, and the errors every operation answers."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    for methods in result.get("paths", {}).values():
        for method, operation in methods.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            _document_errors(operation)
    return result


def _document_errors(operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    idempotent = any(
        p.get("in") == "header" and p.get("name") == IDEMPOTENCY_HEADER_NAME
        for p in operation.get("parameters", [])
    )
    statuses = list(ALWAYS)
    if "requestBody" in operation:
        statuses += WITH_BODY
    if idempotent:
        statuses += WITH_IDEMPOTENCY_KEY
        for status, response in responses.items():
            if status.startswith("2"):
                response.setdefault("headers", {})[REPLAYED_HEADER] = REPLAYED_HEADER_SCHEMA
    for status in statuses:
        responses.setdefault(str(status), _error_response_object(status))
    for status, response in responses.items():
        headers = RESPONSE_HEADERS.get(int(status))
        if headers and _is_error(response):
            response.setdefault("headers", {}).update(headers)
    operation["responses"] = dict(sorted(responses.items()))


def _is_error(response: dict) -> bool:
    return response.get("content", {}).get("application/json", {}).get("schema") == ERROR_REF


def _error_response_object(status: int) -> dict:
    return {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }


class BlankAsNullFieldSchema(OpenApiSerializerFieldExtension):
    """`BlankAsNullField` answers null for empty text: the schema has to say it may."""

    target_class = BlankAsNullField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "nullable": True}
