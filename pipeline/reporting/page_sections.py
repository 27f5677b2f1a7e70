"""The report page's evidence sections: the gate's deltas against the baseline, the MLflow run, the model card.

Each is HTML for ``html_page.render_html``, built from plain values, every piece of text escaped. The model
card's Markdown is rendered by markdown-it-py (CommonMark with tables), its front matter shown as a block.
"""

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

from pipeline.gate.comparison import Row


@dataclass(frozen=True)
class Deltas:
    """The gate's comparison of this report's metrics with a baseline, or why there is none."""

    baseline_label: str
    rows: Sequence[Row] = ()
    missing: str = ""
    """Why no baseline could be read (then ``rows`` is empty)."""


@dataclass(frozen=True)
class Evidence:
    """What the report page shows beyond the figures: all optional, so a page renders without them."""

    deltas: Deltas | None = None
    run_url: str | None = None
    model_card: str | None = None
    per_class_rows: Sequence[tuple[str, float]] = field(default_factory=tuple)
    """(class name, test −ELBO in nats) for the bar chart."""


def _number(value: float | None, sign: str = "") -> str:
    if value is None:
        return "n/a"
    return format(value, f"{sign}.4f") if math.isfinite(value) else str(value)


def deltas_html(deltas: Deltas) -> str:
    """The gate's table: metric, baseline, this run, Δ, allowed move, verdict; failing rows marked."""
    label = html.escape(deltas.baseline_label)
    if not deltas.rows:
        return f'<p id="deltas">No baseline to compare with ({html.escape(deltas.missing)}).</p>'
    lines = [f'<p>Against <code>{label}</code>, as <code>python -m pipeline check</code> compares them:</p>',
             '<table id="deltas"><tr><th>metric</th><th>baseline</th><th>this run</th><th>Δ</th>'
             "<th>allowed</th><th>verdict</th></tr>"]
    for row in deltas.rows:
        allowed = ("" if row.tolerance is None else
                   f"{'drop' if row.tolerance.higher_is_better else 'rise'} ≤ {row.tolerance.tolerance:g}")
        flag = ' class="failed"' if row.failed else ""
        lines.append(f"<tr{flag}><td><code>{html.escape(row.metric)}</code></td>"
                     f'<td class="number">{_number(row.baseline)}</td><td class="number">{_number(row.new)}</td>'
                     f'<td class="number">{_number(row.delta, "+")}</td><td>{html.escape(allowed)}</td>'
                     f"<td>{html.escape(row.verdict)}</td></tr>")
    lines.append("</table>")
    return "\n".join(lines)


def run_html(run_id: str, run_url: str | None) -> str:
    """The MLflow run: a link when the store is a server, else its id and where to look it up."""
    code = f'<code id="run-id">{html.escape(run_id)}</code>'
    if run_url:
        return f'MLflow run <a id="run-link" href="{html.escape(run_url)}">{code}</a>'
    return f"MLflow run {code} (a local store: open it with <code>uv run mlflow ui</code>)"


def model_card_html(card: str) -> str:
    """The card's body as HTML, under its front matter shown as YAML; raw HTML in it is escaped but its anchors."""
    front, body = "", card
    if card.startswith("---\n"):
        front, _, body = card[4:].partition("\n---\n")
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    body_html = renderer.render(body.replace('<a id="', "[[anchor:").replace('"></a>', "]]"))
    body_html = _restore_anchors(body_html)
    metadata = f"<details><summary>Front matter</summary><pre>{html.escape(front)}</pre></details>" if front else ""
    return f'<section id="model-card">{metadata}{body_html}</section>'


def _restore_anchors(rendered: str) -> str:
    """Turn the ``[[anchor:id]]`` placeholders back into empty ``<a id>`` targets (ids are [a-z0-9-] only)."""
    parts = rendered.split("[[anchor:")
    restored = [parts[0]]
    for part in parts[1:]:
        anchor, _, rest = part.partition("]]")
        safe = "".join(char for char in anchor if char.isalnum() or char == "-")
        restored.append(f'<a id="{safe}"></a>{rest}')
    return "".join(restored)


def class_picker_html(pngs: Mapping[str, bytes]) -> str:
    """One full-size image per class, one shown at a time, picked by radio buttons (CSS only, no script)."""
    keys = [f"class-{index}" for index in range(len(pngs))]
    radios = [f'<input type="radio" name="class-picker" id="{key}"{" checked" if index == 0 else ""}>'
              f'<label for="{key}">{html.escape(name)}</label>'
              for index, (key, name) in enumerate(zip(keys, pngs, strict=True))]
    images = [f'<img class="one-class" id="{key}-image" alt="manifold of class {html.escape(name)}" '
              f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
              for key, (name, png) in zip(keys, pngs.items(), strict=True)]
    rules = " ".join(f"#{key}:checked ~ #{key}-image {{ display: block; }}" for key in keys)
    return (f'<figure id="class-manifolds"><style>#class-manifolds img.one-class {{ display: none; }} {rules}</style>'
            f'{"".join(radios)}{"".join(images)}<figcaption>One class at a time: the conditional decoder\'s manifold '
            "for the picked label at full size, over the same latent range as the figure above.</figcaption></figure>")
