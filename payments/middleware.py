"""Middleware of the API edge."""

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import JsonResponse

from payments.cards import CARD_NUMBER_MESSAGE, card_number_param
from payments.errors import ErrorCode
from payments.exception_handlers import error_body


class CardNumberGuardMiddleware:
    """
    Refuses (400, changing nothing) any API request carrying something that looks like a
    card number, in the query or the body, before a view, a log line or a row can keep it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                param = card_number_param(request)
            except (RequestDataTooBig, TooManyFieldsSent):
                param = None  # the view answers those (413, 400)
            if param is not None:
                return JsonResponse(
                    error_body(ErrorCode.CARD_NUMBER_REFUSED, CARD_NUMBER_MESSAGE, param or None),
                    status=400,
                )
        return self.get_response(request)
