"""Why a restore did not go ahead or did not finish."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orion_operator.restore.run import RestoreResult


class RestoreError(Exception):
    """A restore that was refused or failed; `reason` goes into a condition, `message` is safe
    to show (no credentials) and says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class WaitingForBackup(RestoreError):
    """The referenced Backup does not exist yet or has not completed: wait, do not fail."""


class VerificationFailed(RestoreError):
    """The restore committed, but a verification query did not meet its expectation."""

    def __init__(self, message: str, result: RestoreResult) -> None:
        super().__init__("VerificationFailed", message)
        self.result = result
