"""dbt unit tests whose inputs are an upstream's public nodes, in both consumer styles.

A unit test's `given` input stands in for the node it names: dbt builds it as an ephemeral model
(`UnitTestManifestLoader.parse_unit_test_case`) and types the fixture's columns from that node's
relation in the warehouse (`get_fixture_sql` calls `adapter.get_columns_in_relation`), for
`ref('up', …)` and `source('up', …)` alike. That relation is the upstream's public one, so its
columns are those of the interface. Sync holds every such fixture to the interface it syncs: a
fixture naming a column the upstream does not publish fails here, before dbt runs, even when a
development warehouse built from an unpublished branch has that column.

dbt-loom: dbt gives the stand-in of a `ref('up', …)` input dbt's default access (`protected`), not
the upstream node's `public`, and refuses it from another package when that package restricts
access; dbt-loom declares every manifest it loads restricted, keyed by the manifest's
`metadata.project_name`. The synced dbt-loom input holds only public nodes, so that restriction has
nothing to protect: `loom_input` names the input so it keys no package (README, "Unit tests across
projects"). When dbt-loom reads the registry itself (`loom_reads: registry`), the name is the
producer's and the mesh cannot change it: such inputs are refused with the setting that works.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.core.errors import ConfigError, SyncError
from mesh.project.artifacts import Json
from mesh.project.config import Project, read_yaml

# What the synced dbt-loom input calls itself: never a dbt project name (those are identifiers), so
# dbt-loom's per-package access restriction applies to no package.
LOOM_INPUT_NAME = "{upstream} (public interface, synced by the mesh)"

_INPUT_RE = re.compile(
    r"""\s*(?P<kind>ref|source)\s*\(\s*(['"])(?P<pkg>\w+)\2\s*,\s*(['"])(?P<name>\w+)\4\s*"""
    r"""(?:,\s*(?:v|version)\s*=\s*(?P<q>['"]?)(?P<ver>[\w.]+)(?P=q)\s*)?\)\s*"""
)
_SKIPPED_DIRS = {"target", "dbt_packages", "logs", "dbt_modules", "node_modules"}


@dataclass(frozen=True)
class FixtureInput:
    """One `given` input of a unit test that names another project's node."""

    test: str
    file: Path
    kind: str  # "ref" or "source"
    upstream: str
    name: str
    version: str | None
    columns: tuple[str, ...] | None  # None: a SQL fixture, whose columns only dbt can tell

    def describe(self) -> str:
        pinned = f", v={self.version}" if self.version else ""
        return f"{self.kind}('{self.upstream}', '{self.name}'{pinned})"


def loom_input(doc: Json, upstream: str) -> Json:
    """The dbt-loom input of `upstream`: its trimmed interface, named so dbt-loom restricts no package."""
    return {**doc, "metadata": {**doc["metadata"], "project_name": LOOM_INPUT_NAME.format(upstream=upstream)}}


def _paths(project: Project, key: str, default: str) -> list[Path]:
    spec: Any = None
    with contextlib.suppress(ConfigError):
        spec = read_yaml(project.dir / "dbt_project.yml", "dbt_project.yml")
    value = spec.get(key) if isinstance(spec, dict) else None
    names = [str(p) for p in value] if isinstance(value, list) and value else [default]
    return [project.dir / name for name in names]


def _yaml_files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        parts = set(path.relative_to(folder).parts)
        if path.suffix in (".yml", ".yaml") and path.is_file() and not parts & _SKIPPED_DIRS:
            yield path


def _csv_header(text: str) -> tuple[str, ...]:
    for row in csv.reader(io.StringIO(text.strip())):
        return tuple(cell.strip() for cell in row)
    return ()


def _columns(given: Json, fixture_dirs: list[Path]) -> tuple[str, ...] | None:
    """The column names a fixture gives, as dbt reads them (`dict` rows, `csv` rows or file)."""
    fmt = str(given.get("format") or "dict")
    if fmt == "sql":
        return None
    rows = given.get("rows")
    fixture = given.get("fixture")
    if fmt == "csv":
        if isinstance(rows, str):
            return _csv_header(rows)
        if isinstance(fixture, str):
            for folder in fixture_dirs:
                for path in sorted(folder.rglob(f"{fixture}.csv")) if folder.is_dir() else []:
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        return _csv_header(path.read_text(encoding="utf-8"))
        return None
    if isinstance(rows, list):
        names: dict[str, None] = {}
        for row in rows:
            if isinstance(row, dict):
                names.update(dict.fromkeys(str(key) for key in row))
        return tuple(names)
    return None


def fixture_inputs(project: Project, upstreams: set[str]) -> list[FixtureInput]:
    """Every unit-test input of the project that names one of `upstreams` (`ref('up', …)` or
    `source('up', …)`), read from the YAML under its model paths. YAML dbt cannot read is dbt's to
    report: it is skipped here."""
    fixture_dirs = [folder / "fixtures" for folder in _paths(project, "test-paths", "tests")]
    found: list[FixtureInput] = []
    for folder in _paths(project, "model-paths", "models"):
        for path in _yaml_files(folder):
            try:
                if "unit_tests" not in path.read_text(encoding="utf-8"):
                    continue
                doc = read_yaml(path, "YAML file")
            except (OSError, UnicodeDecodeError, ConfigError):
                continue
            tests = doc.get("unit_tests") if isinstance(doc, dict) else None
            for test in tests if isinstance(tests, list) else []:
                if not isinstance(test, dict):
                    continue
                for given in test.get("given") or []:
                    m = _INPUT_RE.fullmatch(str(given.get("input", ""))) if isinstance(given, dict) else None
                    if m is None or m.group("pkg") not in upstreams:
                        continue
                    found.append(
                        FixtureInput(
                            str(test.get("name")), path, m.group("kind"), m.group("pkg"), m.group("name"),
                            m.group("ver"), _columns(given, fixture_dirs),
                        )
                    )
    return found


def check_fixtures(
    project: Project,
    fixtures: list[FixtureInput],
    upstream: str,
    nodes: Json,
    version: str,
    resolve: Callable[[FixtureInput], str | None],
) -> None:
    """Hold the project's unit-test inputs on `upstream` (among `fixtures`, from `fixture_inputs`)
    to its interface (`nodes`: the synced nodes, `version`: the interface version): every fixture
    column must be a published column.

    Raises SyncError naming the test, the input, the column and the published columns."""
    for given in (fixture for fixture in fixtures if fixture.upstream == upstream):
        where = f"{project.name}/{given.file.relative_to(project.dir)}: unit test {given.test}"
        uid = resolve(given)
        if uid is None or given.columns is None:
            continue  # an unknown reference is sync's to report; a SQL fixture dbt checks itself
        published = [str(name) for name in nodes[uid].get("columns") or {}]
        if not published:
            continue  # no columns on record (an uncontracted node without a catalog): dbt checks
        known = {name.lower() for name in published}
        unknown = [name for name in given.columns if name.lower() not in known]
        if unknown:
            raise SyncError(
                f"{where}: its fixture for {given.describe()} names column {unknown[0]}, which "
                f"{upstream} does not publish (published {version}: {', '.join(published)}); "
                "a fixture holds the columns of the interface"
            )
