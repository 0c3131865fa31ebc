"""Pseudonyms for erased customers: the statistical record stays linkable, the person does not."""

from __future__ import annotations

import hashlib


def pseudonym(customer_id: str, salt: str) -> str:
    """A stable replacement id for an erased customer, the same for every store."""
    return "erased-" + hashlib.sha256(f"{salt}:{customer_id}".encode()).hexdigest()[:24]
