"""The nearest known name for a mistyped one, for error messages ("did you mean ...?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``name``, or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> str:
    """One line naming the unknown ``name``, the nearest choice and all of them."""
    choices = list(choices)
    return f"unknown {kind} {name!r}{did_you_mean(name, choices)}; {kind}s: {', '.join(choices)}"
