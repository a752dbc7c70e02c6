"""The events and webhook endpoints API: thin views over webhooks.callbacks/selectors."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from payments.apis import LIST_PARAMETERS, paginated_response
from payments.pagination import IdCursorPagination
from webhooks import callbacks, selectors
from webhooks.callbacks import EVENT_TYPES
from webhooks.filters import EndpointFilter, EventFilter
from webhooks.serializers import (
    EndpointCreateInputSerializer,
    EndpointDeletedOutputSerializer,
    EndpointOutputSerializer,
    EndpointUpdateInputSerializer,
    EndpointWithSecretOutputSerializer,
    EventOutputSerializer,
)


class EventListApi(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="events_list",
        parameters=[OpenApiParameter("type", str, enum=EVENT_TYPES), *LIST_PARAMETERS],
        responses=EventOutputSerializer(many=True),
    )
    def get(self, request):
        events = selectors.event_list(**request.user.scope)
        return paginated_response(
            request, self, events, EventOutputSerializer, filterset=EventFilter
        )


class EventDetailApi(APIView):
    @extend_schema(operation_id="events_retrieve", responses=EventOutputSerializer)
    def get(self, request, event_id: str):
        event = selectors.event_get_for_merchant(**request.user.scope, event_id=event_id)
        return Response(EventOutputSerializer(event).data)


class EndpointListCreateApi(APIView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="webhook_endpoints_list",
        parameters=LIST_PARAMETERS,
        responses=EndpointOutputSerializer(many=True),
    )
    def get(self, request):
        endpoints = selectors.endpoint_list(**request.user.scope)
        return paginated_response(
            request, self, endpoints, EndpointOutputSerializer, filterset=EndpointFilter
        )

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=EndpointCreateInputSerializer,
        responses={201: EndpointWithSecretOutputSerializer},
    )
    def post(self, request):
        serializer = EndpointCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = callbacks.endpoint_create(**request.user.scope, **serializer.validated_data)
        return Response(
            EndpointWithSecretOutputSerializer(endpoint).data, status=status.HTTP_201_CREATED
        )


class EndpointDetailApi(APIView):
    @extend_schema(operation_id="webhook_endpoints_retrieve", responses=EndpointOutputSerializer)
    def get(self, request, endpoint_id: str):
        endpoint = selectors.endpoint_get_for_merchant(
            **request.user.scope, endpoint_id=endpoint_id
        )
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_update",
        request=EndpointUpdateInputSerializer,
        responses=EndpointOutputSerializer,
    )
    def patch(self, request, endpoint_id: str):
        serializer = EndpointUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = selectors.endpoint_get_for_merchant(
            **request.user.scope, endpoint_id=endpoint_id
        )
        endpoint = callbacks.endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_delete", responses={200: EndpointDeletedOutputSerializer}
    )
    def delete(self, request, endpoint_id: str):
        endpoint = selectors.endpoint_get_for_merchant(
            **request.user.scope, endpoint_id=endpoint_id
        )
        callbacks.endpoint_delete(endpoint=endpoint)
        return Response(EndpointDeletedOutputSerializer({"id": endpoint_id}).data)


class EndpointRotateSecretApi(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_rotate_secret",
        request=None,
        responses=EndpointWithSecretOutputSerializer,
    )
    def post(self, request, endpoint_id: str):
        endpoint = selectors.endpoint_get_for_merchant(
            **request.user.scope, endpoint_id=endpoint_id
        )
        endpoint = callbacks.endpoint_rotate_secret(endpoint=endpoint)
        return Response(EndpointWithSecretOutputSerializer(endpoint).data)
