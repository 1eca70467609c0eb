"""Every error the engine raises, rooted in `CarlError` and in the stdlib class it resembles.

Errors cross process and Ray boundaries, so each one pickles with its fields intact.
Messages name the field, the rule and an accepted value; they never carry secrets.
"""

from __future__ import annotations

from typing import Any


class CarlError(Exception):
    """Base of every CARL Studio error. `hint` says what would lift the error."""

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self):  # keeps keyword fields across pickling
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


def _rebuild(cls: type[CarlError], message: str, state: dict[str, Any]) -> CarlError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class InvalidSpecError(CarlError, ValueError):
    """A field of a spec or request breaks a rule. Carries `field` (dotted path)."""

    def __init__(self, field: str, rule: str, *, got: Any = None, hint: str | None = None) -> None:
        shown = "" if got is None else f"; got {got!r}"
        super().__init__(f"{field}: {rule}{shown}", hint=hint, field=field, rule=rule)


class JobNotFoundError(CarlError, KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with job_id {job_id!r}", hint="carl_status lists the known jobs", job_id=job_id)


class IllegalTransitionError(CarlError, RuntimeError):
    """A job state change that the state machine does not allow (or lost a race)."""


class MissingCredentialsError(CarlError, PermissionError):
    """A backend or the Hub needs a credential that is not set. Names the variable, never its value."""

    def __init__(self, variable: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs {variable}", hint=f"set the environment variable {variable}", variable=variable)


class BackendError(CarlError, RuntimeError):
    """A compute backend failed to do what was asked (submit, poll, cancel, fetch)."""


class NotSupportedError(CarlError, NotImplementedError):
    """A capability that is listed but not built (tinker, prime), with the reason."""


class GateRefusedError(CarlError, PermissionError):
    """An action refused because an eval gate failed or is missing (carl_push)."""


class TrainingError(CarlError, RuntimeError):
    """Training could not start or stopped with an error."""


class ServiceError(CarlError, RuntimeError):
    """An outside service (Claude's Messages API, the Hugging Face Hub) failed or refused a request."""
