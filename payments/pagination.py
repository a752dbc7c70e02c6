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
            return super().decode_cursor(request)
        except Exception:  # DRF answers a bad cursor with a 404; it is bad input.
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None

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
