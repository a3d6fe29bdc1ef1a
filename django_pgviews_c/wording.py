"""Words every command, the admin and the status report share."""

from __future__ import annotations

import logging

__all__ = ["plural", "warn"]


def plural(count: int, one: str, many: str | None = None) -> str:
    """``count`` and the words that go with it: ``one`` for 1 ("1 view"), else ``many``
    ("2 views"; by default ``one`` and an s)."""
    return f"{count} {one if count == 1 else (many if many is not None else one + 's')}"


def warn(logger: logging.Logger, text: str, *, said: bool) -> None:
    """``text`` logged at WARNING, unless it was just written on the command's output (``said``)
    and no handler is configured for the logger (Django's default logging configures none for
    it): logging's last-resort handler would then print it on stderr a second time."""
    if said and not logger.hasHandlers():
        return
    logger.warning("%s", text)
