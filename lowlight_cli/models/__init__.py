"""One file per architecture; importing this package registers every variant."""

from . import msrnet  # noqa: F401
from . import neid  # noqa: F401
from . import mirnet  # noqa: F401
from . import lantern  # noqa: F401
