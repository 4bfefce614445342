"""Domain errors of the feature layer. The CLI and the API map them to exit codes and HTTP statuses."""

from __future__ import annotations


class KairosError(Exception):
    """Base of every Kairos domain error; the message says what to do."""


class MappingError(KairosError):
    """The YAML mapping is missing, malformed or names something the contract does not know."""


class InputDataError(KairosError):
    """An input file is missing, unreadable, or lacks a column the mapping names."""


class QuarantineThresholdError(KairosError):
    """Too large a share of the input was quarantined; nothing was published."""

    def __init__(self, message: str, report: dict[str, object]) -> None:
        super().__init__(message)
        self.report = report


class DataNotFoundError(KairosError):
    """A data directory or snapshot the command needs does not exist yet."""


class NoDatesError(KairosError):
    """A job built on time was asked of an export without order times (mapping ``dates: false``)."""
