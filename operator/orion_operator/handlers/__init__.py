"""kopf handlers, one module per kind; importing this package registers them all."""

from orion_operator.handlers import (
    apideployment,
    backup,
    backupschedule,
    lifecycle,
    restore,
    tenant,
    tenant_deletion,  # after tenant: kopf runs a kind's handlers in this order
)

__all__ = [
    "apideployment",
    "backup",
    "backupschedule",
    "lifecycle",
    "restore",
    "tenant",
    "tenant_deletion",
]

from orion_operator.handlers import maintenance

__all__ += ["maintenance"]
