"""The names of what the pipeline measures, and the metrics file, as plain data that any layer reads without Keras.

Training logs, the history CSV, MLflow and the tables share ``LOSS_NAMES``; evaluate writes its test metrics as one
flat JSON object of numbers (``reports/metrics.json``), which the gate, the report and DVC read.
"""

import json
import math
from pathlib import Path

from pipeline.core.errors import PipelineError, clipped

LOSS_NAMES = ("loss", "reconstruction_loss", "kl_loss", "neg_elbo")
"""``loss`` is the training objective reconstruction + β · KL; ``neg_elbo`` is the true −ELBO (β = 1)."""

EpochLogs = dict[str, float]
"""One epoch's values keyed by ``LOSS_NAMES``, their ``val_`` twins, and ``seconds``."""


class MetricsFileError(PipelineError):
    """A metrics file that cannot be read, or that is not a flat JSON object of numbers."""


def parse_metrics(text: str, source: str, error: type[PipelineError] = MetricsFileError) -> dict[str, float]:
    """A flat JSON object of numbers; ``NaN``/``Infinity`` are kept, ``null`` reads as NaN.

    Raises ``error`` naming ``source`` for text that is not JSON, not an object, or holds a value that is not a
    number.
    """
    try:
        raw = json.loads(text)
    except ValueError as cause:
        raise error(f"{source} is not valid JSON ({cause})") from None
    if not isinstance(raw, dict):
        raise error(f"{source} must hold a JSON object of metrics, not {type(raw).__name__}")
    return {name: _metric(name, value, source, error) for name, value in raw.items()}


def _metric(name: str, value: object, source: str, error: type[PipelineError]) -> float:
    """One metric as a float: ``null`` is NaN, and JSON's ``1e400`` was already infinity; an integer beyond a
    float's range (``OverflowError`` in every later subtraction) or anything not a number is refused."""
    if value is None:
        return math.nan
    if isinstance(value, float):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{source}: metric {clipped(repr(name))} is {clipped(repr(value))}, not a number")
    try:
        return float(value)
    except OverflowError:
        digits = math.ceil(value.bit_length() * math.log10(2))
        raise error(f"{source}: metric {clipped(repr(name))} is an integer of about {digits} digits, "
                    "beyond the range of a float (1.8e308)") from None


def read_metrics_file(path: Path, error: type[PipelineError] = MetricsFileError) -> dict[str, float]:
    """The metrics in ``path``; ``error`` naming the file when it cannot be read or parsed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as cause:
        raise error(f"cannot read {path}: {cause.strerror or cause}") from None
    return parse_metrics(text, str(path), error)
