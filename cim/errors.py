"""Domain errors.

Every error carries a stable machine ``code`` and a message in Chinese and English. Library
code raises these; only ``api/`` maps them to HTTP statuses and the CLIs to exit codes.
"""

from __future__ import annotations

from typing import Any


class CimError(Exception):
    """Base of all domain errors: a code plus a bilingual message."""

    code = "error"

    def __init__(self, zh: str, en: str, **detail: Any) -> None:
        super().__init__(f"{zh} / {en}")
        self.zh = zh
        self.en = en
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form shared by the API and the CLIs."""
        out: dict[str, Any] = {"code": self.code, "message_zh": self.zh, "message_en": self.en}
        if self.detail:
            out["detail"] = self.detail
        return out


class ConfigError(CimError):
    """A setting is missing or inconsistent."""

    code = "config"


class DatabaseUnavailable(CimError):
    """The database cannot be reached or the local cluster is not running."""

    code = "database_unavailable"


class MigrationError(CimError):
    """A migration failed or an applied migration file was changed."""

    code = "migration"


class NotFound(CimError):
    """A requested object (layer, feature, delivery, job, token) does not exist."""

    code = "not_found"


class InvalidInput(CimError):
    """A request parameter or file is malformed."""

    code = "invalid_input"


class Unauthenticated(CimError):
    """No valid token was presented."""

    code = "unauthenticated"


class Forbidden(CimError):
    """The token is valid but its role or counties do not allow the action."""

    code = "forbidden"


class Conflict(CimError):
    """The request conflicts with the current state (e.g. a job already confirmed)."""

    code = "conflict"


class PayloadTooLarge(CimError):
    """An upload exceeds the configured size limit."""

    code = "payload_too_large"


class QueryTimeout(CimError):
    """A statement ran past the configured statement timeout."""

    code = "query_timeout"


class UnreadableInput(InvalidInput):
    """An input file cannot be read at all (truncated, wrong type, missing parts)."""

    code = "unreadable_input"


class CrsError(InvalidInput):
    """A coordinate reference system is unknown or does not fit the data."""

    code = "crs"


class BackupRejected(CimError):
    """A backup or restore was refused or did not complete: a damaged backup, a non-empty
    target, a failed dump or restore, or a restored database that differs from its manifest."""

    code = "backup_rejected"


class IngestRejected(CimError):
    """Validation found errors; the delivery was not loaded."""

    code = "ingest_rejected"
