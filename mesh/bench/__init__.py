"""Benchmark of the mesh at scale (`invoke bench`).

- `generate`: a realistic producer project of N models (layered DAG, contracts, versions) and the
  consumers that reference a handful of its public models, cached by their parameters;
- `step`: one measured step, run in a fresh interpreter (`python -m mesh.bench.step ...`) so its
  peak memory is its own;
- `runner`: generates (or reuses) the projects, runs every step `--repeat` times, computes ratios;
- `report`: the table, `results.json` and `scaling.png`.
"""
