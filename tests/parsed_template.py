"""The template mesh with dbt_up parsed by real dbt: a manifest that says what each schema holds.

`dbt parse` writes dbt_up/target/manifest.json without touching a warehouse (about 20 s). The copy
lives under the session's base temp folder and is made once per session (per xdist worker), so
every test module that needs it shares it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import copy_template

PARSED = "parsed-template"


def parsed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template copy whose dbt_up has target/manifest.json from `dbt parse` (local target)."""
    from mesh.project.config import load_mesh
    from mesh.warehouse.runner import run_dbt

    root = tmp_path_factory.getbasetemp() / PARSED
    manifest = root / "dbt_up" / "target" / "manifest.json"
    if not manifest.is_file():
        copy_template(root)
        run_dbt(load_mesh(root, "local"), "dbt_up", ["parse"])
    assert manifest.is_file()
    return root


def load_manifest(root: Path, project: str = "dbt_up") -> dict[str, Any]:
    return dict(orjson.loads((root / project / "target" / "manifest.json").read_bytes()))
