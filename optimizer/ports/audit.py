"""The audit log: who did what, when and why (approvals, promotions, rollbacks, erasures)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

JsonValue = str | int | float | bool | None | Sequence["JsonValue"] | Mapping[str, "JsonValue"]
"""What an audit entry's details may hold: they are stored as a JSON document."""


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    subject: str
    at: datetime
    details: Mapping[str, JsonValue] | None = None
    id: int | None = field(default=None, compare=False)


class AuditLog(Protocol):
    def add(self, entry: AuditEntry) -> None:
        """Append one entry in its own transaction."""
        ...

    def entries(
        self,
        *,
        action: str | None = None,
        subject: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; `action`, `subject` and `actor` match as prefixes."""
        ...
