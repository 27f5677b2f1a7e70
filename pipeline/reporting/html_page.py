"""The one-page HTML report: metrics, figures and params in a single self-contained file.

Images are embedded as base64 ``data:`` URIs, so ``index.html`` opens alone, without a server
or the PNGs beside it. Every piece of text is escaped.
"""

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.core.model_kind import LIKELIHOOD, NAMES, ModelKind
from pipeline.core.params import flatten
from pipeline.reporting.page_sections import Evidence, deltas_html, model_card_html, run_html

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.2em; }
tr.failed td { background: #fde8e8; }
#model-card { border-top: 1px solid #ccc; }
"""


@dataclass(frozen=True)
class ReportImage:
    """A PNG to embed (its file name and bytes), with the sentence shown under it."""

    name: str
    png: bytes
    caption: str


def format_value(value: object) -> str:
    """Metrics and params as people read them: ints whole, floats to 6 significant digits."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(value, ".6g") if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def data_uri(png: bytes) -> str:
    """A PNG as an inline ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(rows: Mapping[str, object], header: tuple[str, str]) -> str:
    lines = [f"<table><tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>"]
    for key, value in sorted(flatten(rows)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        cell = ' class="number"' if number else ""
        lines.append(f"<tr><td><code>{html.escape(key)}</code></td>"
                     f"<td{cell}>{html.escape(format_value(value))}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _figure(image: ReportImage) -> str:
    name = html.escape(image.name)
    return (f'<figure id="{name}"><img src="{data_uri(image.png)}" alt="{name}">'
            f"<figcaption>{html.escape(image.caption)} (<code>{name}</code>)</figcaption></figure>")


def _explorer_link(href: str) -> str:
    return (f'<p><a id="explorer-link" href="{html.escape(href)}">Latent space explorer</a>: the decoder runs '
            "in that page, so moving the pointer over the test set's z_mean shows the image at any latent point, "
            "and two clicks show the interpolation between them (needs JavaScript; loads nothing).</p>")


def _model_sentence(kind: ModelKind, num_classes: int) -> str:
    given = f", given each test image's label (one of {num_classes} classes)" if num_classes else ""
    likelihood = html.escape(LIKELIHOOD[kind])
    return (f'<p id="model-kind">Model: the {NAMES[kind]}{given}; <code>test_neg_elbo</code> bounds and '
            f"<code>test_nll_is</code> estimates −log {likelihood}, in nats per test image.</p>")


def render_html(dataset: str, run_id: str, metrics: Mapping[str, object], params: Mapping[str, object],
                images: Sequence[ReportImage], explorer: str | None = None, kind: ModelKind = "vae",
                num_classes: int = 0, evidence: Evidence | None = None, extra_figures: Sequence[str] = ()) -> str:
    """The whole page as a string; ``explorer``: the explorer page's path relative to this one, linked.

    ``kind`` and ``num_classes`` (``pipeline.core.model_kind``) name the model in the title and say which
    likelihood the test metrics estimate: −log p(x), or −log p(x|y) for the conditional VAE. ``evidence``
    adds the baseline deltas, the run's link and the model card; ``extra_figures`` are HTML blocks shown after
    the figures (the conditional manifold's class picker).
    """
    evidence = evidence or Evidence()
    name = NAMES[kind]
    title = f"{name[0].upper()}{name[1:]} report: {dataset}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Dataset <strong>{html.escape(dataset)}</strong>, {run_html(run_id, evidence.run_url)}.</p>",
        _model_sentence(kind, num_classes),
        "<h2>Test metrics</h2>",
        _table(metrics, ("metric", "value")) if metrics else "<p>No metrics recorded.</p>",
        *(["<h2>Against the baseline</h2>", deltas_html(evidence.deltas)] if evidence.deltas else []),
        "<h2>Figures</h2>",
        *([_explorer_link(explorer)] if explorer else []),
        *(_figure(image) for image in images),
        *extra_figures,
        "<h2>Params</h2>",
        _table(params, ("param", "value")),
        *(["<h2>Model card</h2>", model_card_html(evidence.model_card)] if evidence.model_card else []),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
