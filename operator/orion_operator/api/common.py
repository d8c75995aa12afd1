"""Building blocks shared by the custom resources' specs and statuses."""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from kube_custom_resource import schema
from pydantic import Field, StringConstraints

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
DnsSubdomain = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
]
SecretName = DnsSubdomain
# A Kubernetes resource quantity such as 250m, 1Gi or 2.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
SecretKey = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)
]

DEFAULT_DATABASE_SECRET = "orion-database"
DEFAULT_DATABASE_SECRET_KEY = "DATABASE_URL"


class SecretKeyRef(schema.BaseModel):
    """A key of a Secret in the object's own namespace."""

    name: SecretName = Field(
        ..., description="Name of the Secret, in the same namespace as the object."
    )
    key: SecretKey = Field(..., description="Key inside the Secret.")


class DatabaseRef(schema.BaseModel):
    """Where the application's PostgreSQL connection URL lives."""

    secret_ref: SecretKeyRef = Field(
        default_factory=lambda: SecretKeyRef(
            name=DEFAULT_DATABASE_SECRET, key=DEFAULT_DATABASE_SECRET_KEY
        ),
        description=(
            "Secret key holding a libpq connection URL "
            "(postgresql://user:password@host:5432/dbname)."
        ),
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(schema.BaseModel):
    """A Kubernetes-style condition (the shape kstatus, Argo CD and Flux read)."""

    type: str = Field(..., description="Condition type, e.g. Ready.")
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str = Field("", description="One CamelCase word saying why.")
    message: str = Field("", description="What happened, for people.")
    last_transition_time: schema.Optional[datetime.datetime] = Field(
        None, description="When the status last changed."
    )
    observed_generation: schema.Optional[int] = Field(
        None, description="The metadata.generation this condition was computed for."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        }
    ),
]
