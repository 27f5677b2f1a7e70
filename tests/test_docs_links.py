"""Every relative link in README.md and docs/*.md resolves: the file exists inside the repository and an
``#anchor`` names a heading of the Markdown file it points into, by GitHub's slug rules. External links are
not fetched (the tests never leave localhost)."""

import re
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from helpers import REPO_ROOT
from markdown_it import MarkdownIt
from markdown_it.token import Token

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PARSER = MarkdownIt("commonmark").enable("table")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading's text: lower case, everything but letters, digits, ``_``, ``-`` and
    spaces dropped, spaces made hyphens (github-slugger, which github.com follows)."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def inline_text(token: Token) -> str:
    """The text a heading shows: its words and code spans, without the Markdown around them."""
    return "".join(child.content for child in token.children or [] if child.type in ("text", "code_inline"))


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown file's headings; a repeated slug gets ``-1``, ``-2``, ... as on GitHub."""
    tokens = PARSER.parse(page.read_text(encoding="utf-8"))
    seen: Counter[str] = Counter()
    found = set()
    for opening, inline in pairwise(tokens):
        if opening.type == "heading_open":
            slug = github_slug(inline_text(inline))
            found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return found


def links(page: Path) -> Iterator[str]:
    """Every link and image target in a Markdown file, as written."""
    for token in PARSER.parse(page.read_text(encoding="utf-8")):
        for child in token.children or []:
            target = child.attrs.get("href") if child.type == "link_open" else child.attrs.get("src")
            if child.type in ("link_open", "image") and isinstance(target, str):
                yield target


def broken(page: Path, target: str) -> str | None:
    """Why a relative link from ``page`` is broken, or None when it resolves (or is not relative)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if not path.is_relative_to(REPO_ROOT):
        return f"{target}: outside the repository"
    if not path.exists():
        return f"{target}: no such file"
    if parts.fragment and path.suffix == ".md" and unquote(parts.fragment) not in anchors(path):
        return f"{target}: no heading #{parts.fragment} in {path.relative_to(REPO_ROOT)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path) -> None:
    problems = [problem for target in links(page) if (problem := broken(page, target))]
    assert not problems, problems


def test_the_checker_catches_a_missing_file_a_missing_heading_and_an_escape() -> None:
    """The checker itself fails where it should, so a clean run means something."""
    page = REPO_ROOT / "docs" / "README.md"
    assert broken(page, "no-such-page.md") == "no-such-page.md: no such file"
    assert broken(page, "../README.md#no-such-heading") is not None
    assert broken(page, "../../etc/hostname") is not None
    assert broken(page, "https://example.invalid/never-fetched") is None
    assert broken(page, "../README.md#quick-start") is None


def test_slugs_follow_githubs_rules(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Use the model\n## `dvc exp show`, readable\n## β and −log p(x)\n## Use the model\n",
                    encoding="utf-8")
    assert anchors(page) == {"use-the-model", "dvc-exp-show-readable", "β-and-log-px", "use-the-model-1"}
