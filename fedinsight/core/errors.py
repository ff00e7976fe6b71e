"""Typed errors: one exception class per kind of user-fixable failure.

The CLI turns any :class:`FedinsightError` into a one-line message on stderr and a non-zero exit
code (no traceback): these are mistakes the user can fix, not bugs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class FedinsightError(Exception):
    """Base class for errors a user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1

    @property
    def public_message(self) -> str:
        """What may leave the partner's machine in a job's error reply (subclasses strip data values)."""
        return str(self)


@dataclass(frozen=True)
class Problem:
    """One validation finding: where it is and what was expected there."""

    file: str
    message: str
    column: str | None = None
    rows: tuple[int, ...] = field(default_factory=tuple)
    values: tuple[str, ...] = field(default_factory=tuple)  # a few offending values, shown on the partner only

    def __str__(self) -> str:
        shown = ", ".join(f"'{v}'" for v in self.values)
        return self.public() + (f"; values: {shown}" if self.values else "")

    def public(self) -> str:
        """The problem without its offending values: what may leave the partner's machine (a job's error reply)."""
        where = self.file if self.column is None else f"{self.file}: column '{self.column}'"
        rows = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (and {len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            rows = f" (rows {shown}{more})"
        return f"{where}: {self.message}{rows}"


class DataValidationError(FedinsightError):
    """Partner data does not match the canonical schema. Carries every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, file: str = "<data>") -> None:
        if isinstance(problems, str):
            problems = [Problem(file=file, message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    @property
    def public_message(self) -> str:
        """The message without offending values (they are customer data): what a job's error reply carries."""
        return "; ".join(p.public() for p in self.problems)


class MappingError(DataValidationError):
    """A partner's ``mapping.toml`` is malformed or does not fit its files (a missing source column, a glob that
    matches nothing, a value map that leaves values unmapped ...). Each problem names the mapping file and the key."""


class DatasetFetchError(FedinsightError):
    """A built-in dataset could not be obtained or verified."""

    exit_code = 3


class DatasetNotFoundError(FedinsightError):
    """A dataset was asked for that is not fetched yet or does not exist."""

    exit_code = 2


class ConfigError(FedinsightError):
    """An option or configuration value is invalid."""

    exit_code = 2


class BudgetExceededError(FedinsightError):
    """A job or query would take a partner past its privacy budget; refused before anything ran."""

    exit_code = 4


class UnknownPartnerError(FedinsightError):
    """A partner id that the coordinator does not know."""

    exit_code = 2


# --- partner-side data protection (issue 7) ---------------------------------------------------------


class PiiDetectedError(FedinsightError):
    """A column looks like a direct identifier and the partner's policy does not say what to do with it.

    The message names the table, the column and an *example pattern* of what was detected, never a value.
    """

    exit_code = 2


class ProtectionPolicyError(ConfigError):
    """The partner's protection policy file is missing, malformed or asks for something unsafe."""


class KeyFileError(FedinsightError):
    """A secret key (tokenization, collaboration or encryption) is missing, unreadable or unsafe."""

    exit_code = 2


class TamperedDataError(FedinsightError):
    """An encrypted file failed authentication: it was modified, truncated, swapped or is not encrypted."""

    exit_code = 5

class PartnerReplyError(FedinsightError):
    """A partner's answer does not match what the coordinator asked for (layout, noise, or missing)."""

    exit_code = 5


class InsightNotFoundError(FedinsightError):
    """An insight id or name that the insight store does not hold."""

    exit_code = 2

class ReplyContentError(FedinsightError):
    """A partner's reply carried something other than model weights and allow-listed metrics."""

    exit_code = 5

class UnknownCustomerError(FedinsightError):
    """A customer id that the partner's data (or its trained customer state) does not hold."""

    exit_code = 2


# --- deployment (issue 6) ---------------------------------------------------------------------------


class NotFoundError(FedinsightError):
    """A job, token or other deployment record that does not exist."""

    exit_code = 2


class DeploymentError(FedinsightError):
    """A coordinator or partner process could not be started, reached or stopped (ports, PID files, Flower)."""

    exit_code = 5


class PartnerIdentityError(FedinsightError):
    """A partner node claimed a partner id other than the one its authenticated key was registered for."""

    exit_code = 5


class StateIntegrityError(FedinsightError):
    """The coordinator's database or keys were lost, emptied, replaced or corrupted while its state folder shows
    history: starting anyway would reset every spent budget, so nothing starts until the operator decides."""

    exit_code = 7


class AuditVerificationError(FedinsightError):
    """The audit log's hash chain does not verify: entries were edited or deleted."""

    exit_code = 6


class ReportError(FedinsightError):
    """A run report cannot be written: the folder is not a finished run, or its files are unreadable."""

    exit_code = 2


class SecureAggregationError(FedinsightError):
    """A secure-aggregation round that must not be released (a partner dropped out, the encoding overflowed,
    or the coordinator configured SecAgg+ differently from what the job's privacy accounting assumes)."""

    exit_code = 4
