"""Exceptions for user mistakes.

Everything a user can get wrong (a bad value, an unknown name, a missing file) raises a
subclass of :class:`L2DynamicsError` with a one-line message that names the field and what is
allowed. The CLI turns these into one readable line and exit status 2; anything else is a bug.
"""


class L2DynamicsError(Exception):
    """Base class of user-facing errors (bad input, missing data, unknown names)."""


class ConfigError(L2DynamicsError, ValueError):
    """A configuration value or key is invalid."""


class DataError(L2DynamicsError):
    """A dataset is missing, malformed, or cannot be produced."""


class StoreError(L2DynamicsError):
    """The run store cannot be opened or does not hold what was asked for."""


class ResourceError(L2DynamicsError):
    """A run would need more memory than is available (see ``l2dynamics.resources``)."""
