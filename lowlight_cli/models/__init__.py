"""One file per architecture; importing this package registers every variant."""

from . import msrnet  # noqa: F401
