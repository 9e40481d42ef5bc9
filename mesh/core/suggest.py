"""Suggestions ("did you mean …?") for a misspelt task, flag, subcommand or mesh.yml key.

One helper so that invoke's usage errors (mesh/ui/taskrunner.py), the `mesh` console script
(mesh/ui/cli.py) and mesh.yml's validation errors (mesh/project/config.py) suggest the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# difflib's ratio: 0.6 is its default; a little lower still catches one slip in a short word
# (`--projet`, `lineag`, `projcts`) without offering unrelated names.
CUTOFF = 0.55


def closest(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str | None:
    """The choice nearest to `word`, or None when nothing is close."""
    found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str:
    """`"; did you mean 'x'?"` for the closest choice, or "" when nothing is close."""
    match = closest(word, choices, cutoff)
    return f"; did you mean {match!r}?" if match else ""
