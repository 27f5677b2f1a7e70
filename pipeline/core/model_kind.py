"""Which model produced a metrics file: the unconditional VAE or the conditional one (Sohn et al. 2015).

The two report the same metric names, but their likelihoods differ: −log p(x) for the VAE,
−log p(x | y) for the conditional VAE, which is given the label. ``metrics.json`` holds numbers
only (the gate parses every value as one), so the evaluate stage writes the kind beside it in
``model.json``, e.g. ``{"kind": "cvae", "likelihood": "p(x|y)", "num_classes": 10}``; the gate
refuses to compare metrics of two kinds, and MLflow runs carry the same kind as a tag.
Metrics from before this file existed came from the unconditional VAE, so a missing file reads as ``vae``.
"""

import json
from typing import Literal, TypeGuard

from pipeline.core.errors import PipelineError

ModelKind = Literal["vae", "cvae"]
VAE: ModelKind = "vae"
CVAE: ModelKind = "cvae"
LIKELIHOOD: dict[str, str] = {VAE: "p(x)", CVAE: "p(x|y)"}
"""The likelihood that ``test_nll_is`` and ``test_neg_elbo`` bound, per kind."""
NAMES: dict[str, str] = {VAE: "unconditional VAE", CVAE: "conditional VAE"}
RUN_TAG = "model.kind"
"""The MLflow run tag (and registered version tag) holding the kind; a run without it is the unconditional VAE."""


class ModelKindError(PipelineError):
    """A ``model.json`` that does not name a known model kind."""


def model_kind(num_classes: int) -> ModelKind:
    """``cvae`` for a model with a label input of ``num_classes`` > 0, else ``vae``."""
    return CVAE if num_classes > 0 else VAE


def is_model_kind(value: object) -> TypeGuard[ModelKind]:
    """Whether ``value`` is one of the kinds, ``vae`` or ``cvae``."""
    return value in NAMES


def describe(num_classes: int) -> dict[str, object]:
    """The content of ``model.json`` for a model whose label input has ``num_classes`` (0: none)."""
    kind = model_kind(num_classes)
    return {"kind": kind, "likelihood": LIKELIHOOD[kind], "num_classes": num_classes}


def parse_kind(text: str | None, source: str) -> ModelKind:
    """The kind named in a ``model.json`` text; ``vae`` when there is no file (``text`` is None).

    Raises ``ModelKindError`` naming ``source`` for invalid JSON or an unknown kind.
    """
    if text is None:
        return VAE
    try:
        kind = json.loads(text).get("kind")
    except (ValueError, AttributeError):
        raise ModelKindError(f"{source} must hold a JSON object with a model \"kind\"") from None
    if not is_model_kind(kind):
        raise ModelKindError(f"{source}: unknown model kind {kind!r}; expected one of {', '.join(LIKELIHOOD)}")
    return kind
