"""The v1 plans and subscriptions API: each view parses, calls one service or selector."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import services as payment_services
from payments.apis import LIST_PARAMETERS, paginated_response
from payments.idempotency import idempotent
from payments.pagination import IdCursorPagination
from payments.permissions import (
    IsPublishableOrSecretKey,
    IsSecretKeyOrCustomer,
    IsSecretKeyOrCustomerReader,
)
from payments.schema import IDEMPOTENCY_HEADER
from subscriptions import selectors, services
from subscriptions.filters import SubscriptionFilter
from subscriptions.serializers import (
    PlanOutputSerializer,
    SubscriptionCancelInputSerializer,
    SubscriptionCreateInputSerializer,
    SubscriptionOutputSerializer,
)


class PlanListApi(APIView):
    permission_classes = [IsPublishableOrSecretKey]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="plans_list",
        responses=PlanOutputSerializer(many=True),
    )
    def get(self, request):
        plans = selectors.plan_list(merchant=request.user.merchant)
        return paginated_response(request, self, plans, PlanOutputSerializer)


class SubscriptionListCreateApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="subscriptions_list",
        parameters=[
            OpenApiParameter("status", str, many=True),
            OpenApiParameter("customer", str),
            OpenApiParameter("plan", str, description="A plan id or code"),
            *LIST_PARAMETERS,
        ],
        responses=SubscriptionOutputSerializer(many=True),
    )
    def get(self, request):
        subscriptions = selectors.subscription_list(**request.user.reader_scope)
        return paginated_response(
            request, self, subscriptions, SubscriptionOutputSerializer, filterset=SubscriptionFilter
        )

    @extend_schema(
        operation_id="subscriptions_create",
        request=SubscriptionCreateInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: SubscriptionOutputSerializer},
    )
    @idempotent
    def post(self, request):
        serializer = SubscriptionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        merchant = request.user.merchant
        subscription = services.subscription_create(
            merchant=merchant,
            livemode=request.user.livemode,
            customer=payment_services.customer_resolve(
                merchant=merchant, reference=data["customer"]
            ),
            plan=selectors.plan_get_for_merchant(merchant=merchant, plan=data["plan"]),
            provider=data.get("provider"),
            return_url=data["return_url"],
            metadata=data.get("metadata"),
            actor=request.user.actor,
        )
        return Response(
            SubscriptionOutputSerializer(subscription).data, status=status.HTTP_201_CREATED
        )


class SubscriptionDetailApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]

    @extend_schema(operation_id="subscriptions_retrieve", responses=SubscriptionOutputSerializer)
    def get(self, request, subscription_id: str):
        subscription = selectors.subscription_get_for_merchant(
            **request.user.reader_scope, subscription_id=subscription_id
        )
        return Response(SubscriptionOutputSerializer(subscription).data)


class SubscriptionCancelApi(APIView):
    # A customer may cancel their own subscription (self-service); nobody else's.
    permission_classes = [IsSecretKeyOrCustomer]

    @extend_schema(
        operation_id="subscriptions_cancel",
        request=SubscriptionCancelInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses=SubscriptionOutputSerializer,
    )
    @idempotent
    def post(self, request, subscription_id: str):
        serializer = SubscriptionCancelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = selectors.subscription_get_for_merchant(
            **request.user.reader_scope, subscription_id=subscription_id
        )
        subscription = services.subscription_cancel(
            subscription=subscription,
            at_period_end=serializer.validated_data["at_period_end"],
            actor=request.user.actor,
        )
        subscription = selectors.subscription_get_for_merchant(
            **request.user.reader_scope, subscription_id=subscription.pk
        )
        return Response(SubscriptionOutputSerializer(subscription).data)
