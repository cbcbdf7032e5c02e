"""Typed errors. Every message says what went wrong; every hint says what to do about it."""

from __future__ import annotations


class LowlightError(Exception):
    """Base of every error the library raises on purpose. The CLI prints it as one line plus a hint."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(LowlightError):
    """The command line asked for something that cannot be done (exit 2)."""

    exit_code = 2


class ModelNotFoundError(UsageError):
    """No registered model or weights tag has this name."""


class InputImageError(LowlightError):
    """An input file is missing, empty, truncated or not an image."""


class ImageArrayError(InputImageError, ValueError, TypeError):
    """An image handed over in memory (a NumPy array or a PIL image) whose type, shape, dtype or values
    lowlight does not take; the message says what it takes. Also a ValueError and a TypeError, the
    errors NumPy code expects for a wrong value or type."""


class ImageTooLargeError(InputImageError):
    """An image whose header claims more pixels than the limit (``max_pixels``); refused before decoding."""


class OutputError(LowlightError):
    """An output cannot be written (unwritable folder, path equal to an input, ...)."""


class WeightsError(LowlightError):
    """Weights are missing, unreachable or fail their sha256 check; never replaced by random ones."""


class DatasetError(LowlightError):
    """A dataset folder is missing or does not have the expected layout."""


class TrainingError(LowlightError):
    """A training run cannot go on (its loss or gradients stopped being finite)."""
