"""Failures the tenancy code reports; messages are for people and carry no credentials."""


class TenancyError(Exception):
    """Base class; `reason` is the CamelCase word that lands in a condition."""

    reason = "TenancyError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DatabaseUnavailable(TenancyError):
    reason = "DatabaseUnreachable"


class SchemaMismatch(TenancyError):
    reason = "SchemaMismatch"


class TenantRowMissing(TenancyError):
    reason = "TenantRowMissing"
