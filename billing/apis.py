"""The v1 invoices API: list, retrieve, and the PDF."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors
from billing.filters import InvoiceFilter
from billing.serializers import InvoiceOutputSerializer
from payments.apis import LIST_PARAMETERS, paginated_response
from payments.pagination import IdCursorPagination
from payments.permissions import IsSecretKeyOrCustomerReader


class InvoiceListApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="invoices_list",
        parameters=[
            OpenApiParameter("status", str, many=True),
            OpenApiParameter("customer", str),
            OpenApiParameter("subscription", str),
            OpenApiParameter("payment", str),
            OpenApiParameter("number", str),
            *LIST_PARAMETERS,
        ],
        responses=InvoiceOutputSerializer(many=True),
    )
    def get(self, request):
        invoices = selectors.invoice_list(**request.user.reader_scope)
        return paginated_response(
            request, self, invoices, InvoiceOutputSerializer, filterset=InvoiceFilter
        )


class InvoiceDetailApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]

    @extend_schema(operation_id="invoices_retrieve", responses=InvoiceOutputSerializer)
    def get(self, request, invoice_id: str):
        invoice = selectors.invoice_get_for_merchant(
            **request.user.reader_scope, invoice_id=invoice_id
        )
        return Response(InvoiceOutputSerializer(invoice).data)


class PdfRenderer(BaseRenderer):
    """
    Lets `Accept: application/pdf` through content negotiation. The PDF itself is sent as
    is; an error on this path (a 404, say) still goes out as the JSON error body.
    """

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return JSONRenderer().render(data)


class InvoicePdfApi(APIView):
    permission_classes = [IsSecretKeyOrCustomerReader]
    renderer_classes = [JSONRenderer, PdfRenderer]

    @extend_schema(
        operation_id="invoices_pdf",
        responses={
            (200, "application/pdf"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The invoice as a PDF document."
            )
        },
    )
    def get(self, request, invoice_id: str):
        from billing.pdf import invoice_pdf_render

        invoice = selectors.invoice_get_for_merchant(
            **request.user.reader_scope, invoice_id=invoice_id
        )
        response = HttpResponse(invoice_pdf_render(invoice), content_type="application/pdf")
        filename = f"{invoice.number or invoice.pk}.pdf"
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        # Issued invoices hold personal data: no shared caches.
        response["Cache-Control"] = "private, no-store"
        return response
