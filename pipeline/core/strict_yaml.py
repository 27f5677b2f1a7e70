"""YAML as DVC reads params.yaml: YAML 1.2 through ruamel.yaml's safe loader, with limits a hostile file cannot pass.

DVC parses params files with ``ruamel.yaml.YAML(typ="safe")`` (``dvc/utils/serialize/_yaml.py``), so
``dvc params diff`` and ``dvc exp show`` show YAML 1.2 values: ``010`` is 10, ``no`` and ``on`` are text,
``1e-5`` is a number, ``1:30`` is text. Reading with the same loader here makes the pipeline, the gate and
MLflow see those same values, never PyYAML's YAML 1.1 ones. The safe loader builds no Python objects
from tags, and refuses a key given twice in one mapping.

Before anything is built, one pass over the parser's events refuses what would cost far more than the
file's size: more than ``MAX_BYTES``, nesting deeper than ``MAX_DEPTH``, a recursive alias, or aliases
(merge keys ``<<`` included) that would expand to more than ``MAX_VALUES`` values ("billion laughs":
2.4 KB of nested aliases is 10⁹ strings). Every error is one short line.
"""

import datetime
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, Event, ScalarEvent

from pipeline.core.errors import clipped

MAX_BYTES = 64 * 1024
"""params.yaml is about 3 KB and dvc.yaml 5 KB; 64 KiB is no hand-written config, and parses in a fraction of a
second."""
MAX_DEPTH = 32
"""params.yaml nests 4 deep (check.tolerances.<metric>.tolerance), dvc.yaml 5; the parser recurses per level."""
OPENERS_IN_A_ROW = re.compile(rf"(?:[\[{{]\s*){{{MAX_DEPTH + 1}}}")
"""More flow collections opened in a row than ``MAX_DEPTH``: refused from the text, because ruamel.yaml's scanner
looks up to 1024 characters ahead for a key and costs the square of the brackets it holds there (seconds)."""
MAX_VALUES = 10_000
"""Scalars and collections after expanding every alias: params.yaml has about 100, dvc.yaml a few hundred; the
pure-Python loader builds about 20 000 values a second on this project's 2-core machine."""
MESSAGE_CHARS = 200


class YamlError(ValueError):
    """The text is not YAML, or is YAML the pipeline refuses to build; the message is one short line."""


def load_yaml_file(path: Path) -> Any:
    """The YAML document in the file ``path``; ``OSError`` when it cannot be read, ``YamlError`` when refused."""
    with open(path, "rb") as stream:
        data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlError(f"refused: larger than {MAX_BYTES} bytes; a params file is a few KB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise YamlError(f"not UTF-8 text: byte {error.start} is {data[error.start:error.start + 1]!r}") from None
    return load_yaml(text)


def load_yaml(text: str) -> Any:
    """The YAML document in ``text``, read as DVC reads it; raise ``YamlError`` when invalid or hostile."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise YamlError(f"refused: larger than {MAX_BYTES} bytes; a params file is a few KB")
    if OPENERS_IN_A_ROW.search(text):
        raise YamlError(f"refused: nested deeper than {MAX_DEPTH} levels")
    try:
        _check_size(_reader().parse(text))
        return _reader().load(text)
    except YAMLError as error:
        raise YamlError(f"not valid YAML: {_one_line(error)}") from None
    except RecursionError:  # a deep structure that the event pass could not see (there is none known)
        raise YamlError(f"refused: nested deeper than {MAX_DEPTH} levels") from None


YAML_11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})
SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


def yaml_12_hint(value: Any, expected: str) -> str:
    """How to write what was probably meant, for a ``value`` refused where ``expected`` (``bool``, ``text`` or
    ``""``) was wanted: where YAML 1.2 (as DVC reads params) and YAML 1.1 disagree, or an unquoted date."""
    if expected == "bool" and isinstance(value, str) and value.lower() in YAML_11_BOOLEANS:
        return f"; YAML 1.2, which DVC and the pipeline read, takes {value} as text: write true or false"
    if isinstance(value, str) and SEXAGESIMAL.match(value):
        return f"; YAML 1.2 takes {value} as text, not YAML 1.1's base-60 number"
    if isinstance(value, datetime.date):
        return "; YAML reads an unquoted date as a date: quote it to mean text"
    if expected == "text" and not isinstance(value, str | list | tuple | dict):
        return "; quote the value to mean text"
    return ""


def _reader() -> YAML:
    """DVC's loader (``YAML(typ="safe")``), pure Python so that its events and values never depend on a C build."""
    return YAML(typ="safe", pure=True)


def _check_size(events: Iterable[Event]) -> None:
    """Refuse a stream whose collections nest deeper than ``MAX_DEPTH`` or whose aliases would expand it to more
    than ``MAX_VALUES`` values, as soon as the events show it: nothing is built, so a bomb costs its own size."""
    open_collections: list[list[Any]] = []  # [values so far, anchor] of each collection not yet closed
    anchored: dict[str, int] = {}  # anchor -> how many values its node expands to
    total = 0
    for event in events:
        if isinstance(event, CollectionStartEvent):
            if len(open_collections) == MAX_DEPTH:
                raise YamlError(f"refused: nested deeper than {MAX_DEPTH} levels (line {_line(event)})")
            open_collections.append([1, event.anchor])
            continue
        if isinstance(event, CollectionEndEvent):
            size, anchor = open_collections.pop()
        elif isinstance(event, ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, AliasEvent):
            if any(event.anchor == anchor for _, anchor in open_collections):
                raise YamlError(f"refused: the alias at line {_line(event)} refers to a collection that holds it "
                                "(a recursive structure)")
            size, anchor = anchored.get(event.anchor, 1), None
        else:
            continue
        if anchor is not None:
            anchored[anchor] = size
        if open_collections:
            open_collections[-1][0] += size
            running = open_collections[-1][0]
        else:
            total += size
            running = total
        if running > MAX_VALUES:
            raise YamlError(f"refused: more than {MAX_VALUES} values once its aliases are expanded (at line "
                            f"{_line(event)}); a params file holds about a hundred")


def _line(event: Any) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def _one_line(error: YAMLError) -> str:
    """ruamel.yaml's message (several lines, with the offending text and an underline) as one short line."""
    if isinstance(error, MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return clipped(f"{where}{' '.join(str(error.problem).split())}", MESSAGE_CHARS)
    return clipped(" ".join(str(error).split()), MESSAGE_CHARS)
