import math

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from payments import providers
from payments.errors import ErrorCode
from payments.exception_handlers import error_body, request_too_large_body
from payments.network import client_ip
from payments.providers.base import WebhookVerificationError
from payments.throttling import rate_take
from webhooks import services


@csrf_exempt
def receive(request, provider: str):
    """`/webhooks/<provider>`: store, verify, dedupe, answer 200 fast; process in Celery."""
    if provider not in providers.ALL_PROVIDERS or not providers.provider_enabled(provider):
        return JsonResponse(
            error_body(ErrorCode.RESOURCE_MISSING, f"No webhook endpoint for '{provider}'."),
            status=404,
        )
    if request.method != "POST":
        response = JsonResponse(
            error_body(ErrorCode.METHOD_NOT_ALLOWED, f'Method "{request.method}" not allowed.'),
            status=405,
        )
        response["Allow"] = "POST"
        return response
    wait = rate_take("webhooks", client_ip(request), settings.WEBHOOK_RATE_LIMIT)
    if wait:
        response = JsonResponse(
            error_body(ErrorCode.RATE_LIMITED, "Too many requests; try again later."), status=429
        )
        response["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse(request_too_large_body(), status=413)
    try:
        receipt = services.webhook_receive(
            provider=provider,
            body=body,
            headers=dict(request.headers),
            source_ip=client_ip(request) or None,
        )
    except WebhookVerificationError as exc:
        return JsonResponse(error_body(ErrorCode.PARAMETER_INVALID, str(exc)), status=400)
    # Exactly 200: some providers (YooKassa) treat any other 2xx as a failure.
    return JsonResponse({"received": True, "duplicate": receipt.duplicate}, status=200)
