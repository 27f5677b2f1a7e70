"""The one-page HTML report: metrics, figures and params in a single self-contained file.

Images are embedded as base64 ``data:`` URIs, so ``index.html`` opens alone, without a server
or the PNGs beside it. Every piece of text is escaped.
"""

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import atomic_files
from pipeline.core.params import flatten

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
"""


@dataclass(frozen=True)
class ReportImage:
    """A PNG to embed, with the sentence shown under it."""

    path: Path
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
    name = html.escape(image.path.name)
    return (f'<figure id="{name}"><img src="{data_uri(image.path.read_bytes())}" alt="{name}">'
            f"<figcaption>{html.escape(image.caption)} (<code>{name}</code>)</figcaption></figure>")


def _explorer_link(href: str) -> str:
    return (f'<p><a id="explorer-link" href="{html.escape(href)}">Latent space explorer</a>: the decoder runs '
            "in that page, so moving the pointer over the test set's z_mean shows the image at any latent point, "
            "and two clicks show the interpolation between them (needs JavaScript; loads nothing).</p>")


def render_html(dataset: str, run_id: str, metrics: Mapping[str, object], params: Mapping[str, object],
                images: Sequence[ReportImage], explorer: str | None = None) -> str:
    """The whole page as a string; ``explorer``: the explorer page's path relative to this one, linked."""
    title = f"VAE report: {dataset}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Dataset <strong>{html.escape(dataset)}</strong>, "
        f"MLflow run <code id=\"run-id\">{html.escape(run_id)}</code>.</p>",
        "<h2>Test metrics</h2>",
        _table(metrics, ("metric", "value")) if metrics else "<p>No metrics recorded.</p>",
        "<h2>Figures</h2>",
        *([_explorer_link(explorer)] if explorer else []),
        *(_figure(image) for image in images),
        "<h2>Params</h2>",
        _table(params, ("param", "value")),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(target: Path, dataset: str, run_id: str, metrics: Mapping[str, object],
               params: Mapping[str, object], images: Sequence[ReportImage], explorer: str | None = None) -> Path:
    """Render the page and write it atomically."""
    atomic_files.write_text(target, render_html(dataset, run_id, metrics, params, images, explorer))
    return target
