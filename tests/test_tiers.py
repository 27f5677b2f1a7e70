"""The tier rules that tests/conftest.py applies at collection (tests/tiers.py)."""

import re
import shlex
import tomllib

import pytest
from helpers import REPO_ROOT
from tiers import TIERS, tier_problem


@pytest.mark.parametrize("tier", TIERS)
def test_one_tier_marker_is_enough_with_or_without_slow(tier: str) -> None:
    assert tier_problem({tier}) is None
    assert tier_problem({tier, "slow", "parametrize"}) is None


def test_a_quick_test_has_no_tier() -> None:
    assert tier_problem(set()) is None
    assert tier_problem({"parametrize", "skipif"}) is None


def test_slow_without_a_tier_is_refused_naming_the_tiers() -> None:
    assert tier_problem({"slow"}) == ("marked slow but in no slow tier: mark it with one of integration, clones, "
                                      "browser, stack instead")


def test_two_tiers_are_refused_naming_both() -> None:
    assert tier_problem({"stack", "integration", "slow"}) == "in 2 slow tiers (integration, stack): mark it with one"


def test_the_default_run_is_the_quick_tier_and_every_tier_is_registered_and_run_by_ci() -> None:
    """``uv run pytest`` leaves the slow tiers out; --strict-markers knows each tier; .ci/run runs each, in order."""
    options = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert shlex.split(options["addopts"])[-2:] == ["-m", "not slow"]
    assert {marker.partition(":")[0] for marker in options["markers"]} == {"slow", *TIERS}
    steps = re.findall(r"^uv run pytest(?: -m (\w+))?$", (REPO_ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    assert steps == ["", *TIERS]
