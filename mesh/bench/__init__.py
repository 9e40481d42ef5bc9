"""Benchmark of the mesh at scale (`invoke bench`).

Against upstream size (`--models`):
- `generate`: a realistic producer project of N models (layered DAG, contracts, versions) and the
  consumers that reference a handful of its public models, cached by their parameters;
- `step`: one measured step, run in a fresh interpreter (`python -m mesh.bench.step ...`) so its
  peak memory is its own;
- `runner`: generates (or reuses) the projects, runs every step `--repeat` times, computes ratios,
  merges them into `results.json`;
- `report`: the tables, `scaling.png` and `mesh_scale.png`.

At the scale of many projects (`--projects`):
- `mesh_generate`: a mesh of N projects (core producers, middle projects, leaf consumers; both
  consumer styles; contracts and tests), deterministic for a spec;
- `mesh_scale`: `invoke mesh` on it cold, as a no-op and after each kind of change, with what each
  run built and skipped.
"""
