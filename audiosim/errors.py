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
