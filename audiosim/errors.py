"""One exception hierarchy for everything audiosim reports to a user."""

from __future__ import annotations


class AudiosimError(Exception):
    """Base class: an error with a message fit to show a user as one line."""


class DecodeError(AudiosimError):
    """A file could not be read as audio."""


class FilterSyntaxError(AudiosimError):
    """A filter expression could not be parsed; ``position`` is the 0-based offset of the bad token."""

    def __init__(self, message: str, *, expression: str = "", position: int | None = None) -> None:
        self.expression = expression
        self.position = position
        self.reason = message
        if position is not None and expression:
            message = f"{message}\n  {expression}\n  {' ' * position}^"
        super().__init__(message)


class LibraryLockedError(AudiosimError):
    """Another process is writing to the library."""


class LibraryError(AudiosimError):
    """The library folder or database cannot be used (missing, read-only, newer schema...)."""


class StoreError(AudiosimError):
    """The vector store failed or disagrees with its configuration."""


class StoreDimensionError(StoreError):
    """A vector store holds vectors of another dimension than the library's analysis makes."""


class QueryError(AudiosimError):
    """A query cannot be answered as asked (unknown file, empty region, ...)."""


class LibraryIncompleteError(LibraryError):
    """The library does not exist yet, or was left half-created; opening it writable creates or completes it."""


def internal_error_summary(exc: BaseException, *, limit: int = 200) -> str:
    """An unexpected exception as ``TypeName: first line of its message``, short enough for one line."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"
