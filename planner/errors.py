"""One root exception for the whole project, with subclasses that say what went wrong and where.

A leaf module: it imports nothing of the project, so `models/` and `simulator/` may raise these too.
The gRPC layer maps each subclass to exactly one status code (see `planner.servicers.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its dotted path (``targets[2].memory_gb``), the offending value and why it is bad."""

    field: str
    value: object
    reason: str

    def __str__(self) -> str:
        return f"{self.field}={self.value!r}: {self.reason}"


class PlannerError(Exception):
    """Root of every error the planner raises on purpose."""


class InvalidArgumentError(PlannerError, ValueError):
    """Input that can never succeed as given. Carries field-level violations."""

    def __init__(self, message: str, violations: list[FieldViolation] | tuple[FieldViolation, ...] = ()):
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        detail = "; ".join(str(v) for v in self.violations)
        super().__init__(f"{message}: {detail}" if detail else message)
        self.message = message

    @classmethod
    def for_field(cls, field: str, value: object, reason: str) -> InvalidArgumentError:
        return cls(f"invalid {field}", [FieldViolation(field, value, reason)])


class CatalogError(InvalidArgumentError):
    """A catalog file or catalog entry is invalid."""


class ImportRowError(InvalidArgumentError):
    """A row of an imported run file is invalid; nothing of its batch was written."""

    def __init__(self, source: str, row: int, field: str, value: object, reason: str):
        self.source = source
        self.row = row
        super().__init__(
            f"{source}: row {row}: bad field {field!r}",
            [FieldViolation(field, value, f"row {row}: {reason}")],
        )


class NotFoundError(PlannerError, LookupError):
    """A named thing (tier, target, predictor version, tenant, ...) does not exist."""


class AlreadyExistsError(PlannerError):
    """A create would overwrite something that must stay as it is."""


class FailedPreconditionError(PlannerError):
    """The system is not in a state where the call can run (e.g. no predictor trained yet)."""


class InfeasibleError(PlannerError):
    """No allocation satisfies the hard constraints (budgets, SLOs, capacity, guard rails)."""


class BudgetExhaustedError(PlannerError):
    """A hard budget cap would be crossed; the request is refused rather than overspent."""


class NotImplementedYetError(PlannerError, NotImplementedError):
    """An API part whose handler is not built yet; maps to UNIMPLEMENTED, never to a fake answer."""
