"""kopf handlers, one module per kind; importing this package registers them all."""

from orion_operator.handlers import lifecycle, tenant

__all__ = ["lifecycle", "tenant"]
