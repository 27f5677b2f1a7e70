"""The load benchmark counts as an error every answer a browser could not use, and measures the server's memory."""

import json
import os
import sys

import numpy as np
import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from serve_load import answer_is_right, request_body, tree_rss_mib  # a script, not a package


def test_a_request_holds_the_asked_number_of_latent_points() -> None:
    assert np.asarray(json.loads(request_body(100, seed=3))["inputs"]).shape == (100, 2)


@pytest.mark.parametrize(("status", "text", "right"), [
    (200, json.dumps({"predictions": [[0.5] * 784] * 2}), True),
    (200, '{"predictions": [[NaN' + ", 0.5" * 783 + "]] }", False),  # not JSON for a browser
    (200, json.dumps({"predictions": [[0.5] * 784]}), False),  # one row for two points
    (200, json.dumps({"predictions": [[1.5] * 784] * 2}), False),  # not a pixel mean
    (400, json.dumps({"error_code": "INVALID_PARAMETER_VALUE"}), False),
    (200, "<html>", False),
])
def test_only_a_200_of_strict_json_pixels_per_point_counts_as_right(status: int, text: str, right: bool) -> None:
    assert answer_is_right(status, text.encode(), points=2) is right


def test_the_memory_of_a_process_tree_includes_its_children() -> None:
    own = tree_rss_mib(os.getpid())
    assert own > 10
    assert tree_rss_mib(1 << 30) == 0
