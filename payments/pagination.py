from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """
    Newest first, keyed on the primary key.

    Our ids are ULIDs (time-ordered and unique), so the cursor is a plain `id < x` seek on
    an index: the millionth page costs what the first one does, and there are no ties.
    """

    ordering = "-id"
    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except Exception:  # DRF answers a bad cursor with a 404; it is bad input.
            raise self._invalid_cursor() from None
        # The position goes into the query as it is, and PostgreSQL refuses NUL in text: a
        # forged cursor carrying one is bad input, not a 500.
        if cursor is not None and cursor.position is not None and "\x00" in cursor.position:
            raise self._invalid_cursor()
        return cursor

    def _invalid_cursor(self) -> ValidationError:
        return ValidationError({self.cursor_query_param: ["Invalid cursor."]})

    def get_paginated_response_schema(self, schema):
        # DRF's own leaves `next` and `previous` optional; ours always sends both.
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "format": "uri",
                    "nullable": True,
                    "description": "The next page, or null on the last one.",
                },
                "previous": {
                    "type": "string",
                    "format": "uri",
                    "nullable": True,
                    "description": "The previous page, or null on the first one.",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "in": "query",
                "required": False,
                "description": "An opaque cursor from `next` or `previous`.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "in": "query",
                "required": False,
                "description": f"Page size, 1 to {self.max_page_size} (default {self.page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None and not (raw.isdigit() and 1 <= int(raw) <= self.max_page_size):
            raise ValidationError(
                {self.page_size_query_param: [f"Must be between 1 and {self.max_page_size}."]}
            )
        return super().get_page_size(request)


class TimelineCursorPagination(IdCursorPagination):
    """Oldest first: a timeline reads in the order things happened."""

    ordering = "id"
    page_size = 100
