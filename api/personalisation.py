"""Personalisation: the caller's values filled into the answer's texts, never stored."""

from __future__ import annotations

import re
from collections.abc import Mapping

from optimizer.answers import DecisionAnswer

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str | None, values: Mapping[str, str]) -> str | None:
    """Fill `{name}` placeholders the caller supplied; leave the others for the channel system."""
    if template is None:
        return None
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def personalise(answer: DecisionAnswer, values: Mapping[str, str]) -> DecisionAnswer:
    """The answer with the caller's placeholders filled into its text."""
    if not values or answer.action is None:
        return answer
    text = answer.action.text
    rendered = text.model_copy(
        update={"subject": render(text.subject, values), "body": render(text.body, values)}
    )
    action = answer.action.model_copy(update={"text": rendered})
    return answer.model_copy(update={"action": action})
