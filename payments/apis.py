"""The v1 API views: each parses input, calls one service or selector, renders output."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from payments import selectors, services
from payments.filters import CustomerFilter, filters_apply
from payments.pagination import IdCursorPagination
from payments.permissions import IsPublishableOrSecretKey
from payments.serializers import (
    ConfigOutputSerializer,
    CustomerCreateInputSerializer,
    CustomerOutputSerializer,
)


def paginated_response(request, view, queryset, serializer_class):
    paginator = IdCursorPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class CustomerListCreateApi(APIView):
    @extend_schema(
        operation_id="customers_list",
        parameters=[
            OpenApiParameter("external_id", str),
            OpenApiParameter("email", str),
            OpenApiParameter("created_gte", str, description="ISO 8601 time"),
            OpenApiParameter("created_lte", str, description="ISO 8601 time"),
            OpenApiParameter("limit", int, description="1 to 100, default 20"),
            OpenApiParameter("cursor", str),
        ],
        responses=CustomerOutputSerializer(many=True),
    )
    def get(self, request):
        customers = filters_apply(
            CustomerFilter,
            request.query_params,
            selectors.customer_list(merchant=request.user.merchant),
        )
        return paginated_response(request, self, customers, CustomerOutputSerializer)

    @extend_schema(
        operation_id="customers_create",
        request=CustomerCreateInputSerializer,
        responses={201: CustomerOutputSerializer},
    )
    def post(self, request):
        serializer = CustomerCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(
            merchant=request.user.merchant, **serializer.validated_data
        )
        return Response(CustomerOutputSerializer(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailApi(APIView):
    @extend_schema(operation_id="customers_retrieve", responses=CustomerOutputSerializer)
    def get(self, request, customer_id: str):
        customer = selectors.customer_get_for_merchant(
            merchant=request.user.merchant, customer_id=customer_id
        )
        return Response(CustomerOutputSerializer(customer).data)


class ConfigApi(APIView):
    permission_classes = [IsPublishableOrSecretKey]

    @extend_schema(operation_id="config_retrieve", responses=ConfigOutputSerializer)
    def get(self, request):
        config = selectors.client_config_get(
            merchant=request.user.merchant, livemode=request.user.api_key.livemode
        )
        return Response(ConfigOutputSerializer(config).data)
