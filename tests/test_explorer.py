"""The explorer page's Python side: weight packing, the sample of points, input checks, size and content."""

import base64
import json
import re

import numpy as np
import pytest

from pipeline.reporting.explorer import (
    MAX_POINTS,
    DecoderWeights,
    pack_float16,
    render_explorer,
    sample_points,
)

CLASS_NAMES = [str(k) for k in range(10)]


def decoder(n_inputs: int = 2, n_hidden: int = 256, n_pixels: int = 784, seed: int = 0) -> DecoderWeights:
    rng = np.random.default_rng(seed)
    return DecoderWeights(rng.normal(0, 0.3, (n_inputs, n_hidden)).astype(np.float32),
                          rng.normal(0, 0.3, n_hidden).astype(np.float32),
                          rng.normal(0, 0.15, (n_hidden, n_pixels)).astype(np.float32),
                          rng.normal(0, 0.5, n_pixels).astype(np.float32))


def codes(count: int, latent_dim: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2, (count, latent_dim)).astype(np.float32), rng.integers(0, 10, count)


def embedded_data(page: str) -> dict:
    return json.loads(re.search(r"const EXPLORER_DATA = (\{.*?\});</script>", page).group(1))


def unpack_float16(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2")


def test_float16_packing_round_trips_within_half_precision() -> None:
    values = np.random.default_rng(1).normal(0, 3, (37, 5)).astype(np.float32)
    values[0, :3] = [0.0, 65504.0, -6e-8]  # zero, float16's largest, a subnormal
    unpacked = unpack_float16(pack_float16(values))
    np.testing.assert_array_equal(unpacked, values.ravel().astype(np.float16))
    normal = np.abs(values.ravel()) > 6.2e-5
    assert np.all(np.abs(unpacked[normal] - values.ravel()[normal]) <= 2.0**-11 * np.abs(values.ravel()[normal]))


@pytest.mark.parametrize("bad", [70000.0, -1e6, np.inf, np.nan])
def test_packing_refuses_what_float16_cannot_hold(bad: float) -> None:
    with pytest.raises(ValueError, match="float16's range"):
        pack_float16(np.array([0.5, bad], dtype=np.float32))


@pytest.mark.parametrize(("name", "shape"), [("hidden_bias", (255,)), ("output_kernel", (255, 784)),
                                             ("output_bias", (783,)), ("hidden_kernel", (2, 256, 1))])
def test_decoder_weights_that_do_not_chain_are_refused_by_name(name: str, shape: tuple[int, ...]) -> None:
    arrays = dict(zip(["hidden_kernel", "hidden_bias", "output_kernel", "output_bias"], decoder().arrays(),
                      strict=True))
    arrays[name] = np.zeros(shape, dtype=np.float32)
    with pytest.raises(ValueError, match="decoder (hidden|output)_"):
        DecoderWeights(**arrays)


def test_sample_is_random_without_repeats_and_depends_on_the_seed() -> None:
    z_mean, labels = codes(12000)
    rows = sample_points(z_mean, labels, MAX_POINTS, seed=3)
    assert len(rows) == MAX_POINTS == len(set(rows.tolist()))
    np.testing.assert_array_equal(rows, sample_points(z_mean, labels, MAX_POINTS, seed=3))
    assert not np.array_equal(rows, sample_points(z_mean, labels, MAX_POINTS, seed=4))
    few = sample_points(z_mean[:300], labels[:300], MAX_POINTS, seed=3)
    assert sorted(few.tolist()) == list(range(300)) and not np.array_equal(few, np.arange(300))  # all, shuffled


def test_page_embeds_the_sampled_points_with_their_own_labels() -> None:
    z_mean, labels = codes(8000, latent_dim=3)
    page = render_explorer(decoder(n_inputs=3), z_mean, labels, CLASS_NAMES, (2, 0), (-3, 3), title="t", seed=5)
    data = embedded_data(page)
    rows = sample_points(z_mean, labels, MAX_POINTS, seed=5)
    points = unpack_float16(data["points"]).reshape(-1, 2)
    np.testing.assert_array_equal(points, z_mean[rows][:, [2, 0]].astype(np.float16))
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(data["labels"]), np.uint8), labels[rows])
    assert data["dims"] == [2, 0] and data["axisNames"] == ["z₃", "z₁"]
    for axis, (low, high) in zip(points.T, data["view"], strict=True):  # every point and the grid in view
        assert low < min(axis.min(), -3) and high > max(axis.max(), 3)


def test_page_size_is_the_float16_weights_plus_a_small_rest() -> None:
    weights = decoder()
    z_mean, labels = codes(10000)
    page = render_explorer(weights, z_mean, labels, CLASS_NAMES, (0, 1), (-3, 3), title="t").encode("utf-8")
    weight_bytes = 4 * -(-2 * weights.count() // 3)  # base64 of 2 bytes a weight
    assert weights.count() == 2 * 256 + 256 + 256 * 784 + 784
    assert weight_bytes < len(page) < weight_bytes + 60_000  # points, labels, script and text: ~50 KB


def test_page_refers_to_nothing_outside_itself() -> None:
    z_mean, labels = codes(500)
    page = render_explorer(decoder(), z_mean, labels, CLASS_NAMES, (0, 1), (-3, 3), title="t")
    assert re.findall(r"(?i)\b(?:https?|ftp|wss?):|\b(?:src|href)\s*=|url\(|@import|fetch\(|XMLHttpRequest",
                      page) == []


def test_class_names_and_title_are_escaped() -> None:
    z_mean, labels = codes(50)
    names = ["<b>zero</b>", *CLASS_NAMES[1:9], "T-shirt & top"]
    page = render_explorer(decoder(), z_mean, labels, names, (0, 1), (-3, 3), title="<script>x</script>")
    assert "<b>zero</b>" not in page and "&lt;b&gt;zero&lt;/b&gt;" in page
    assert "T-shirt &amp; top" in page and "<script>x</script>" not in page
    assert embedded_data(page)["classNames"][0] == "<b>zero</b>"


@pytest.mark.parametrize(("latent_dim", "grid_dims", "conditional", "expected"), [
    (3, (2, 0), False, "z₃ and z₁ (report.grid_dims) of the 3 latent dimensions"),
    (3, (2, 0), False, "every other dimension held at 0"),
    (1, (0, 1), False, "one dimension, z₁: a strip"),
    (2, (0, 1), True, "the class chosen in the picker"),
])
def test_page_says_what_is_plotted_and_what_the_decoder_gets(latent_dim: int, grid_dims: tuple[int, int],
                                                               conditional: bool, expected: str) -> None:
    z_mean, labels = codes(100, latent_dim)
    weights = decoder(n_inputs=latent_dim + (10 if conditional else 0))
    page = render_explorer(weights, z_mean, labels, CLASS_NAMES, grid_dims, (-3, 3), title="t",
                           conditional=conditional)
    assert expected in page
    assert ('<select id="label">' in page) == conditional


@pytest.mark.parametrize(("change", "message"), [
    ({"weights": decoder(n_inputs=3)}, "the decoder takes 3 inputs, but z_mean has 2 dimensions"),
    ({"conditional": True}, "takes 2 inputs, but z_mean has 2 dimensions and there are 10 classes"),
    ({"grid_dims": (0, 2)}, r"grid_dims \[0, 2\] do not name distinct dimensions"),
    ({"grid_dims": (1, 1)}, r"grid_dims \[1, 1\] do not name distinct dimensions"),
    ({"labels": np.full(100, 10)}, r"labels must lie in \[0, 10\)"),
    ({"labels": np.zeros(99, dtype=int)}, "100 z_mean rows but 99 labels"),
    ({"z_mean": np.zeros(100)}, r"z_mean must be \(n, latent_dim\)"),
    ({"weights": decoder(n_pixels=780)}, "780 output pixels do not make a square image"),
])
def test_inputs_that_do_not_fit_together_are_refused(change: dict, message: str) -> None:
    z_mean, labels = codes(100)
    arguments = {"weights": decoder(), "z_mean": z_mean, "labels": labels, "grid_dims": (0, 1),
                 "conditional": False, **change}
    with pytest.raises(ValueError, match=message):
        render_explorer(arguments["weights"], arguments["z_mean"], arguments["labels"], CLASS_NAMES,
                        arguments["grid_dims"], (-3, 3), title="t", conditional=arguments["conditional"])
