"""The v1 API views: each parses input, calls one service or selector, renders output."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import customer_tokens, selectors, services
from payments.filters import CustomerFilter, PaymentFilter, RefundFilter, filters_apply
from payments.idempotency import idempotent
from payments.models import PaymentEvent, PaymentStatus
from payments.pagination import IdCursorPagination, TimelineCursorPagination
from payments.permissions import IsPublishableOrSecretKey, IsSecretKeyOrCustomerReader
from payments.schema import IDEMPOTENCY_HEADER, errors
from payments.serializers import (
    ConfigOutputSerializer,
    CreditCreateInputSerializer,
    CreditOutputSerializer,
    CustomerCreateInputSerializer,
    CustomerOutputSerializer,
    CustomerSessionCreateInputSerializer,
    CustomerSessionOutputSerializer,
    PaymentCancelInputSerializer,
    PaymentCaptureInputSerializer,
    PaymentCreateInputSerializer,
    PaymentEventOutputSerializer,
    PaymentOutputSerializer,
    RefundCreateInputSerializer,
    RefundOutputSerializer,
)

# Lists are cursor-paginated (`cursor`, `limit`: documented by the paginator); these
# narrow them by creation time.
LIST_PARAMETERS = [
    OpenApiParameter("created_gte", OpenApiTypes.DATETIME, description="Created at or after"),
    OpenApiParameter("created_lte", OpenApiTypes.DATETIME, description="Created at or before"),
]
# Said on every operation a customer session token may call, so the docs tell which.
CUSTOMER_READABLE = (
    "Also open to a customer session token, which sees only its own customer's data."
)


def paginated_response(request, view, queryset, serializer_class, *, filterset=None, context=None):
    """
    One page of `queryset`, narrowed by `filterset` from the query string when given. The
    view's `pagination_class` pages it (and tells the schema that the answer is a page).
    """
    if filterset is not None:
        queryset = filters_apply(filterset, request.query_params, queryset)
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context or {}).data
    return paginator.get_paginated_response(data)


class CustomerListCreateApi(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="customers_list",
        parameters=[
            OpenApiParameter("external_id", str),
            OpenApiParameter("email", str),
            *LIST_PARAMETERS,
        ],
        responses=CustomerOutputSerializer(many=True),
    )
    def get(self, request):
        customers = selectors.customer_list(merchant=request.user.merchant)
        return paginated_response(
            request,
            self,
            customers,
            CustomerOutputSerializer,
            filterset=CustomerFilter,
            context=request.user.scope,
        )

    @extend_schema(
        operation_id="customers_create",
        request=CustomerCreateInputSerializer,
        responses={201: CustomerOutputSerializer, **errors(409)},
    )
    def post(self, request):
        serializer = CustomerCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(
            merchant=request.user.merchant, **serializer.validated_data
        )
        return Response(
            CustomerOutputSerializer(customer, context=request.user.scope).data,
            status=status.HTTP_201_CREATED,
        )


class CustomerDetailApi(APIView):
    @extend_schema(operation_id="customers_retrieve", responses=CustomerOutputSerializer)
    def get(self, request, customer_id: str):
        customer = selectors.customer_get_for_merchant(
            merchant=request.user.merchant, customer_id=customer_id
        )
        return Response(CustomerOutputSerializer(customer, context=request.user.scope).data)


class CustomerSessionCreateApi(APIView):
    @extend_schema(
        operation_id="customer_sessions_create",
        description=(
            "Mint a short-lived token (JWT) with which one customer, for instance in your "
            "frontend, reads their own data. It is valid in the mode of the key that minted "
            "it, only on operations that say so, and never creates, captures, cancels or "
            "refunds payments."
        ),
        request=CustomerSessionCreateInputSerializer,
        responses={201: CustomerSessionOutputSerializer},
    )
    def post(self, request):
        serializer = CustomerSessionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = selectors.customer_get_for_merchant(
            merchant=request.user.merchant,
            customer_id=serializer.validated_data["customer"],
            param="customer",
        )
        livemode = request.user.livemode
        token, expires_at = customer_tokens.customer_token_mint(
            customer=customer, livemode=livemode
        )
        session = {
            "customer": customer,
            "token": token,
            "expires_at": expires_at,
            "livemode": livemode,
        }
        response = Response(
            CustomerSessionOutputSerializer(session).data, status=status.HTTP_201_CREATED
        )
        # A bearer credential: no cache between us and the merchant's server may keep it.
        response["Cache-Control"] = "no-store"
        return response


class ConfigApi(APIView):
    permission_classes = [IsPublishableOrSecretKey]

    @extend_schema(operation_id="config_retrieve", responses=ConfigOutputSerializer)
    def get(self, request):
        config = selectors.client_config_get(**request.user.scope)
        return Response(ConfigOutputSerializer(config).data)


class PaymentListCreateApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="payments_list",
        description=CUSTOMER_READABLE,
        parameters=[
            OpenApiParameter("status", str, many=True, enum=PaymentStatus.values),
            OpenApiParameter("provider", str),
            OpenApiParameter("customer", str),
            OpenApiParameter("order_id", str),
            OpenApiParameter("reference", str),
            *LIST_PARAMETERS,
        ],
        responses=PaymentOutputSerializer(many=True),
    )
    def get(self, request):
        payments = selectors.payment_list(**request.user.reader_scope)
        return paginated_response(
            request, self, payments, PaymentOutputSerializer, filterset=PaymentFilter
        )

    @extend_schema(
        operation_id="payments_create",
        request=PaymentCreateInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: PaymentOutputSerializer},
    )
    @idempotent
    def post(self, request):
        serializer = PaymentCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        merchant = request.user.merchant
        if "customer" in data:
            data["customer"] = services.customer_resolve(
                merchant=merchant, reference=data["customer"]
            )
        payment = services.payment_create(
            merchant=merchant,
            livemode=request.user.livemode,
            actor=request.user.actor,
            **data,
        )
        return Response(PaymentOutputSerializer(payment).data, status=status.HTTP_201_CREATED)


class PaymentDetailApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]

    @extend_schema(
        operation_id="payments_retrieve",
        description=CUSTOMER_READABLE,
        responses=PaymentOutputSerializer,
    )
    def get(self, request, payment_id: str):
        payment = selectors.payment_get_for_merchant(
            **request.user.reader_scope, payment_id=payment_id
        )
        return Response(PaymentOutputSerializer(payment).data)


class PaymentEventsApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]
    # A timeline reads oldest first.
    pagination_class = TimelineCursorPagination

    @extend_schema(
        operation_id="payments_events_list",
        description=CUSTOMER_READABLE,
        responses=PaymentEventOutputSerializer(many=True),
    )
    def get(self, request, payment_id: str):
        payment = selectors.payment_get_for_merchant(
            **request.user.reader_scope, payment_id=payment_id
        )
        return paginated_response(
            request,
            self,
            selectors.payment_events_list(payment=payment),
            PaymentEventOutputSerializer,
        )


class PaymentCancelApi(APIView):
    @extend_schema(
        operation_id="payments_cancel",
        request=PaymentCancelInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={200: PaymentOutputSerializer, **errors(502)},
    )
    @idempotent
    def post(self, request, payment_id: str):
        PaymentCancelInputSerializer(data=request.data).is_valid(raise_exception=True)
        payment = selectors.payment_get_for_merchant(**request.user.scope, payment_id=payment_id)
        payment = services.payment_cancel(
            payment=payment, source=PaymentEvent.Source.API, actor=request.user.actor
        )
        return Response(PaymentOutputSerializer(payment).data)


class PaymentCaptureApi(APIView):
    @extend_schema(
        operation_id="payments_capture",
        request=PaymentCaptureInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={200: PaymentOutputSerializer, **errors(502)},
    )
    @idempotent
    def post(self, request, payment_id: str):
        serializer = PaymentCaptureInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment = selectors.payment_get_for_merchant(**request.user.scope, payment_id=payment_id)
        payment = services.payment_capture(
            payment=payment,
            amount=serializer.validated_data.get("amount"),
            source=PaymentEvent.Source.API,
            actor=request.user.actor,
        )
        return Response(PaymentOutputSerializer(payment).data)


class PaymentRefundListCreateApi(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="payments_refunds_list", responses=RefundOutputSerializer(many=True)
    )
    def get(self, request, payment_id: str):
        payment = selectors.payment_get_for_merchant(**request.user.scope, payment_id=payment_id)
        refunds = selectors.refund_list_for_payment(payment=payment)
        return paginated_response(request, self, refunds, RefundOutputSerializer)

    @extend_schema(
        operation_id="payments_refunds_create",
        request=RefundCreateInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: RefundOutputSerializer},
    )
    @idempotent
    def post(self, request, payment_id: str):
        serializer = RefundCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        payment = selectors.payment_get_for_merchant(**request.user.scope, payment_id=payment_id)
        refund = services.refund_create(
            payment=payment,
            amount=serializer.validated_data.get("amount"),
            reason=serializer.validated_data["reason"],
            source=PaymentEvent.Source.API,
            actor=request.user.actor,
        )
        return Response(RefundOutputSerializer(refund).data, status=status.HTTP_201_CREATED)


class RefundListApi(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="refunds_list",
        parameters=LIST_PARAMETERS,
        responses=RefundOutputSerializer(many=True),
    )
    def get(self, request):
        refunds = selectors.refund_list(**request.user.scope)
        return paginated_response(
            request, self, refunds, RefundOutputSerializer, filterset=RefundFilter
        )


class RefundDetailApi(APIView):
    @extend_schema(operation_id="refunds_retrieve", responses=RefundOutputSerializer)
    def get(self, request, refund_id: str):
        refund = selectors.refund_get_for_merchant(**request.user.scope, refund_id=refund_id)
        return Response(RefundOutputSerializer(refund).data)


class CustomerCreditListCreateApi(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="customers_credits_list", responses=CreditOutputSerializer(many=True)
    )
    def get(self, request, customer_id: str):
        customer = selectors.customer_get_for_merchant(
            merchant=request.user.merchant, customer_id=customer_id
        )
        credits = selectors.credit_list(customer=customer, livemode=request.user.livemode)
        return paginated_response(request, self, credits, CreditOutputSerializer)

    @extend_schema(
        operation_id="customers_credits_create",
        request=CreditCreateInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: CreditOutputSerializer},
    )
    @idempotent
    def post(self, request, customer_id: str):
        serializer = CreditCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = selectors.customer_get_for_merchant(
            merchant=request.user.merchant, customer_id=customer_id
        )
        data = serializer.validated_data
        credit = services.customer_credit_change(
            customer=customer,
            kind=data["type"],
            amount=data["amount"],
            currency=data["currency"],
            description=data["description"],
            source=PaymentEvent.Source.API,
            actor=request.user.actor,
            livemode=request.user.livemode,
        )
        return Response(CreditOutputSerializer(credit).data, status=status.HTTP_201_CREATED)
