"""Progress for long operator commands: one line on stderr, redrawn in place."""

BAR_WIDTH = 30


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#########                     ]` for `done` of `total` (clamped to full)."""
    filled = width * min(done, total) // total if total else 0
    return f"[{'#' * filled}{' ' * (width - filled)}]"
