"""The audit log in memory."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime

from optimizer.ports.audit import AuditEntry


class MemoryAuditLog:
    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: AuditEntry) -> None:
        with self._lock:
            self._entries.append(replace(entry, id=len(self._entries) + 1))

    def entries(
        self,
        *,
        action: str | None = None,
        subject: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        with self._lock:
            found = [
                e
                for e in reversed(self._entries)
                if (action is None or e.action.startswith(action))
                and (subject is None or e.subject.startswith(subject))
                and (actor is None or e.actor.startswith(actor))
                and (since is None or e.at >= since)
            ]
        return found[:limit]

    def rename_subject(self, old: str, new: str) -> None:
        """Move the entries about `old` (and `old/…`) to `new`, as an erasure does."""
        with self._lock:
            self._entries = [
                replace(e, subject=new + e.subject[len(old) :])
                if e.subject == old or e.subject.startswith(f"{old}/")
                else e
                for e in self._entries
            ]
