"""The test tiers: ``uv run pytest`` runs the quick one (every test not marked ``slow``), ``uv run pytest -m TIER``
one slow tier. A test is in at most one slow tier, and every slow test is in one, so the tiers together run
every test exactly once."""

from collections.abc import Iterable

TIERS = ("integration", "clones", "browser", "stack")
"""The slow tiers, in the order ``.ci/run`` runs them after the quick one."""


def tier_problem(markers: Iterable[str]) -> str | None:
    """What is wrong with a test carrying ``markers`` (their names), or None: two tiers, or ``slow`` with none."""
    names = set(markers)
    tiers = [tier for tier in TIERS if tier in names]
    if len(tiers) > 1:
        return f"in {len(tiers)} slow tiers ({', '.join(tiers)}): mark it with one"
    if not tiers and "slow" in names:
        return f"marked slow but in no slow tier: mark it with one of {', '.join(TIERS)} instead"
    return None
