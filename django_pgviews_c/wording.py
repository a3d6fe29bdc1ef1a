"""Words every command, the admin and the status report share."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, one: str, many: str | None = None) -> str:
    """``count`` and the words that go with it: ``one`` for 1 ("1 view"), else ``many``
    ("2 views"; by default ``one`` and an s)."""
    return f"{count} {one if count == 1 else (many if many is not None else one + 's')}"
