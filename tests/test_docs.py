"""The README and the docs pages: every relative link points at a file and heading that exist."""

import functools
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted(ROOT.glob("docs/**/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def prose(page: pathlib.Path) -> str:
    """The page's text without its fenced code blocks (read once per page)."""
    return re.sub(r"```.*?```", "", page.read_text(), flags=re.S)


def anchors(page: pathlib.Path) -> set[str]:
    return {anchor(m) for m in re.findall(r"^#+ (.+)$", prose(page), flags=re.M)}


def relative_links(page: pathlib.Path) -> list[str]:
    return [t for t in LINK.findall(prose(page)) if not re.match(r"[a-z]+:", t)]


def test_anchor_follows_github():
    assert anchor("Fig. 2/4 with PPI") == "fig-24-with-ppi"
    assert anchor("β, phases, pool") == "β-phases-pool"
    assert anchor("Checkpoints, resume, warm starts") == "checkpoints-resume-warm-starts"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.name}")
    assert not broken, "\n".join(broken)


def test_docs_hold_records_not_scripts():
    """A command that regenerates a record lives in experiments/ (tested there); docs/ keeps
    the records and the commands as text."""
    scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.py"))
    assert scripts == []
