"""Small text helpers shared by every rendering (task output, error messages)."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 change`, `2 changes`, `0 changes`; `many` for irregular plurals (`1 entry`, `2 entries`)."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {many or word + 's'}"
