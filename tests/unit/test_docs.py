"""The documentation: a README that is read (short, every link landing on a page and a heading
that exist) and a site under docs/ that mkdocs builds strictly, every link and anchor checked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]
LINK_RE = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)")
HEADING_RE = re.compile(r"^#{1,6} (.+)$", re.M)
FENCE_RE = re.compile(r"^```.*?^```", re.M | re.S)


def _slug(title: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title.replace("`", ""))
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def _anchors(page: Path) -> set[str]:
    return {_slug(t) for t in HEADING_RE.findall(FENCE_RE.sub("", page.read_text(encoding="utf-8")))}


def _build(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MKDOCS, "--site-dir", str(root / "site")], cwd=root, capture_output=True, text=True,
        check=False, env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root)
    return root


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = _build(_copy(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "repo/site/architecture.html").is_file()


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    page = root / "docs/design.md"
    page.write_text(page.read_text() + "\nSee [the run](run.md#no-such-heading).\n")
    done = _build(root)
    assert done.returncode != 0 and "no-such-heading" in done.stderr


def test_the_readme_is_short_and_its_links_land() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count("\n") < 300
    broken = []
    for target in LINK_RE.findall(FENCE_RE.sub("", text)):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = REPO / path if path else REPO / "README.md"
        if not page.exists() or (anchor and anchor not in _anchors(page)):
            broken.append(target)
    assert broken == []


def test_every_page_is_in_the_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages == set(re.findall(r":\s*([\w-]+\.md)$", nav, re.M))
