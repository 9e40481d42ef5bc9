"""Generate a mesh of N dbt projects for the mesh-scale benchmark (`invoke bench --projects N`).

The mesh has three roles, wired by a fixed rule so that a spec always gives the same mesh:
- core producers (`core_00`, ...): generated raw tables (DuckDB `range()`, no external data),
  staging views, intermediate views, marts tables, a share of the marts `access: public` with an
  enforced contract;
- middle projects (`mid_00`, ...): read one or two upstreams (a core producer, sometimes an earlier
  middle project: chains core -> mid -> mid -> leaf), build on them and publish public models;
- leaf consumers (`leaf_00`, ...): read one or two upstreams (a middle project, sometimes a core
  producer too), publish nothing.
Consumers alternate between the two styles the mesh supports: `upstreams_via: sources` (generated
dbt sources) and `upstreams_via: loom` (dbt-loom refs). A consumer reads a few public models of each
upstream, one staging view each.

Every model has a primary key `id` (the same spine of `rows` ids in every project, so cross-project
joins match) and typed columns computed from its parents' columns by type-safe expressions, so the
SQL builds on DuckDB whatever the parents' types. Tests: `not_null` on each staging key, `unique` and
`not_null` on each mart's key. Profiles follow the mesh's conventions: a project's own file under
`MESH_BUILD_DIR` (else `MESH_WAREHOUSE_DIR`), each upstream ATTACHed read-only from
`MESH_WAREHOUSE_DIR` under the upstream's name.

`write_mesh` writes the whole mesh (mesh.yml, profiles, projects) and a `plan.json` naming what the
benchmark's scenarios change: a leaf model, a core producer's private model, a public model's
description, and the projects each change must rebuild.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mesh.bench.generate import MACROS, cte, spec_digest

GENERATOR_VERSION = 1
DOMAINS = (
    "orders", "customers", "payments", "products", "inventory", "shipping", "marketing",
    "finance", "support", "accounts", "billing", "web", "mobile", "partners", "risk", "hr",
)
# Column names and their types (a column means the same thing wherever it appears).
COLUMNS = {
    "amount": "double", "quantity": "bigint", "price": "double", "discount": "double",
    "status": "varchar", "channel": "varchar", "region": "varchar", "country": "varchar",
    "currency": "varchar", "created_on": "date", "updated_on": "date", "shipped_on": "date",
    "segment": "varchar", "tier": "varchar", "score": "double", "category": "varchar",
    "campaign": "varchar", "device": "varchar", "plan": "varchar", "revenue": "double",
    "cost": "double", "margin": "double", "tax": "double", "fee": "double", "balance": "double",
    "rating": "bigint", "priority": "bigint", "owner": "varchar", "team": "varchar",
    "carrier": "varchar", "weight": "double", "duration": "bigint", "attempts": "bigint",
    "is_active": "boolean", "is_test": "boolean", "is_deleted": "boolean", "locale": "varchar",
}
CORE, MIDDLE, LEAF = "core", "middle", "leaf"
MAX_VIEW_DEPTH = 3


@dataclass(frozen=True)
class MeshSpec:
    """What the generated mesh looks like; its JSON (with the generator's and dbt's versions) is
    the cache key."""

    projects: int = 20
    models: int = 120  # per project, its staging readers of upstream models included
    public: int = 8  # public models of each producer (core and middle projects)
    refs: int = 3  # public models a consumer reads from each of its upstreams
    rows: int = 1000
    threads: int = 4  # dbt threads in each project's profile (the template's)
    seed: int = 11

    def key(self, dbt_version: str) -> str:
        return f"p{self.projects}-m{self.models}-{spec_digest(self, GENERATOR_VERSION, dbt_version)}"


@dataclass
class Model:
    """One model of a generated project."""

    name: str
    layer: str  # base | staging | intermediate | marts
    domain: str
    columns: list[tuple[str, str]]  # (name, type); the first is `id bigint`
    parents: list[str] = field(default_factory=list)  # models of the same project
    upstream: tuple[str, str] | None = None  # staging readers: (upstream project, public model)
    public: bool = False

    @property
    def sql_file(self) -> str:
        return f"models/{self.layer}/{self.name}.sql"


@dataclass
class ProjectPlan:
    """One generated project: its role, upstreams, how it reads them, and its models."""

    name: str
    role: str
    upstreams: list[str]
    via: str  # sources | loom (consumers only)
    models: list[Model]

    @property
    def public(self) -> list[Model]:
        return [m for m in self.models if m.public]

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)


@dataclass
class MeshPlan:
    """The whole generated mesh, in build order."""

    spec: MeshSpec
    projects: list[ProjectPlan]

    def project(self, name: str) -> ProjectPlan:
        return next(p for p in self.projects if p.name == name)

    def consumers_of(self, name: str) -> list[str]:
        return [p.name for p in self.projects if name in p.upstreams]


def topology(count: int) -> list[tuple[str, str, list[str], str]]:
    """(name, role, upstreams, via) of each project: about 15% core producers, 30% middle projects,
    the rest leaf consumers; some read two upstreams, some middle projects chain."""
    if count < 3:
        raise ValueError("a generated mesh has at least 3 projects (a core, a middle, a leaf)")
    n_core = max(1, round(count * 0.15))
    n_mid = max(1, round(count * 0.3))
    n_leaf = count - n_core - n_mid
    cores = [f"core_{i:02d}" for i in range(n_core)]
    mids = [f"mid_{i:02d}" for i in range(n_mid)]
    out: list[tuple[str, str, list[str], str]] = [(name, CORE, [], "sources") for name in cores]
    for i, name in enumerate(mids):
        ups = [cores[i % n_core]]
        if i % 3 == 2:
            ups.append(mids[i - 1])  # a chain: core -> mid -> mid
        elif i % 2 == 1 and n_core > 1:
            ups.append(cores[(i + 1) % n_core])
        out.append((name, MIDDLE, ups, "sources" if i % 2 == 0 else "loom"))
    for j in range(n_leaf):
        ups = [mids[j % n_mid]]
        if j % 2 == 1:
            ups.append(cores[j % n_core])
        elif j % 4 == 2 and n_mid > 1:
            ups.append(mids[(j + 1) % n_mid])
        out.append((f"leaf_{j:02d}", LEAF, ups, "sources" if j % 2 == 0 else "loom"))
    return out


def _columns(rng: random.Random, count: int) -> list[tuple[str, str]]:
    names = sorted(COLUMNS)
    rng.shuffle(names)
    return [("id", "bigint")] + [(name, COLUMNS[name]) for name in names[: count - 1]]


def plan_mesh(spec: MeshSpec) -> MeshPlan:
    """Decide every project and model of the mesh (names, layers, parents, columns, access)."""
    if spec.models < 12:
        raise ValueError("a generated project has at least 12 models")
    rng = random.Random(spec.seed)
    projects: list[ProjectPlan] = []
    for index, (name, role, ups, via) in enumerate(topology(spec.projects)):
        domain_of = lambda k, i=index: DOMAINS[(i * 5 + k) % len(DOMAINS)]  # noqa: E731
        staging: list[Model] = []
        models: list[Model] = []
        if role == CORE:
            for k in range(max(2, spec.models // 15)):
                base = Model(f"base_{domain_of(k)}_{k:03d}", "base", domain_of(k), _columns(rng, rng.randint(5, 10)))
                models.append(base)
                staging.append(
                    Model(f"stg_{domain_of(k)}_{k:03d}", "staging", domain_of(k), base.columns, [base.name])
                )
        else:
            for up in ups:
                offered = projects[[p.name for p in projects].index(up)].public
                count = min(spec.refs, len(offered))
                # Each consumer reads a different slice of its upstream's public models.
                start = (index * spec.refs) % len(offered)
                for k in range(count):
                    read = offered[(start + k) % len(offered)]
                    staging.append(
                        Model(f"stg_{up}__{read.name}", "staging", read.domain, read.columns,
                              upstream=(up, read.name))
                    )
        models += staging
        left = spec.models - len(models)
        n_public = min(spec.public, max(1, left // 3)) if role != LEAF else 0
        n_marts = max(n_public + 1, round(left * 0.45))
        n_inter = left - n_marts
        inter: list[Model] = []
        # Views over views are inlined by the database: a chain of them stays short (at most
        # MAX_VIEW_DEPTH views deep), or a query's plan grows with the number of paths.
        depth = {m.name: 1 for m in staging}
        for k in range(n_inter):
            pool = [m for m in staging + inter[-40:] if depth[m.name] < MAX_VIEW_DEPTH]
            parents = [m.name for m in rng.sample(pool, min(len(pool), rng.randint(2, 3)))]
            model = Model(f"int_{domain_of(k)}_{k:03d}", "intermediate", domain_of(k),
                          _columns(rng, rng.randint(5, 12)), parents)
            depth[model.name] = 1 + max(depth[p] for p in parents)
            inter.append(model)
        marts: list[Model] = []
        pool = inter or staging
        for k in range(n_marts):
            is_public = k >= n_marts - n_public
            parents = [m.name for m in rng.sample(pool, min(len(pool), rng.randint(2, 4)))]
            kind = "pub" if is_public else ("fct" if k % 3 else "dim")
            marts.append(
                Model(f"{kind}_{domain_of(k)}_{k:03d}", "marts", domain_of(k),
                      _columns(rng, rng.randint(6, 14)), parents, public=is_public)
            )
        models += inter + marts
        assert len(models) == spec.models, (name, len(models), spec.models)
        projects.append(ProjectPlan(name, role, ups, via, models))
    return MeshPlan(spec, projects)


# --- SQL and YAML ---------------------------------------------------------------------------------



def _expr(column: str, source_type: str, target: str, k: int) -> str:
    """An expression of type `target` computed from `column` of type `source_type` (never fails
    at run time, whatever the types)."""
    if target == source_type:
        same = {
            "varchar": f"upper({column})",
            "bigint": f"{column} + {k}",
            "double": f"round({column} * 1.5, 2)",
            "date": f"{column} + {k}",
            "boolean": f"not {column}",
        }
        return same[target]
    if target == "varchar":
        return f"cast({column} as varchar)"
    if target == "double" and source_type == "bigint":
        return f"cast({column} as double) * 1.5"
    other = {
        "bigint": f"cast(hash({column}) % 100000 as bigint)",
        "double": f"cast(hash({column}) % 100000 as double) / 100",
        "date": f"date '2024-01-01' + cast(hash({column}) % 365 as integer)",
        "boolean": f"hash({column}) % 2 = 0",
    }
    return other[target]


def _base_sql(model: Model, rows: int) -> str:
    picks = ["    cast(range as bigint) as id"]
    for k, (col, typ) in enumerate(model.columns[1:], 1):
        value = {
            "bigint": f"range * {k + 1} % 1000",
            "varchar": f"'{model.domain}_' || cast(range % {7 * k + 3} as varchar)",
            "double": f"cast(range % {11 * k + 5} as double) * 1.25",
            "date": "date '2024-01-01' + cast(range % 365 as integer)",
            "boolean": f"range % {k + 1} = 0",
        }[typ]
        picks.append(f"    cast({value} as {typ}) as {col}")
    return (
        "-- Generated raw rows (stands for a loaded source).\n\nwith\n\n"
        + cte("spine", f"select range from range({rows})")
        + "\n\nselect\n" + ",\n".join(picks) + "\n\nfrom spine\n"
    )


def _staging_sql(model: Model, via: str) -> str:
    if model.upstream is not None:
        up, name = model.upstream
        read = f"{{{{ source('{up}', '{name}') }}}}" if via == "sources" else f"{{{{ ref('{up}', '{name}') }}}}"
    else:
        read = f"{{{{ ref('{model.parents[0]}') }}}}"
    renamed = ",\n".join(f"    {col}" for col, _typ in model.columns)
    return "\n\n".join(
        [
            "with",
            cte("source", f"select * from {read}") + ",",
            cte("renamed", f"select\n{renamed}\n\nfrom source\n\nwhere id is not null"),
            "select * from renamed\n",
        ]
    )


def _model_sql(model: Model, by_name: dict[str, Model]) -> str:
    parents = [by_name[p] for p in model.parents]
    ctes = [cte(f"p{k}", f"select * from {{{{ ref('{p.name}') }}}}") + "," for k, p in enumerate(parents)]
    joins = "\n".join(f"left join p{k}\n    on p0.id = p{k}.id" for k in range(1, len(parents)))
    picks = ["    p0.id as id"]
    for k, (col, typ) in enumerate(model.columns[1:], 1):
        parent_index = k % len(parents)
        parent = parents[parent_index]
        source_col, source_type = parent.columns[k % len(parent.columns)]
        picks.append(f"    {_expr(f'p{parent_index}.{source_col}', source_type, typ, k)} as {col}")
    ctes.append(cte("joined", "select\n" + ",\n".join(picks) + f"\n\nfrom p0\n{joins}".rstrip()) + ",")
    if model.layer == "marts":
        ctes.append(
            cte("aggregated", "select\n    id,\n    count(*) as row_count\n\nfrom joined\n\ngroup by 1")
            + ","
        )
        cols = ",\n".join(f"    joined.{col}" for col, _typ in model.columns)
        ctes.append(
            cte("final", f"select\n{cols}\n\nfrom joined\n\ninner join aggregated\n"
                 "    on joined.id = aggregated.id\n\nwhere aggregated.row_count > 0")
        )
    else:
        ctes.append(cte("final", "select * from joined"))
    return "\n\n".join(["with", *ctes, "select * from final\n"])


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def public_description(project: str, model: Model) -> str:
    return f"Public {model.domain} model of {project}: one row per id."


def _model_yaml(project: str, model: Model, group: str) -> list[str]:
    if model.public:
        about = public_description(project, model)
    else:
        about = f"{model.layer.capitalize()} {model.domain} model of {project}: one row per id."
    out = [f"  - name: {model.name}", f"    description: {_q(about)}"]
    if model.public:
        out += ["    config:", f"      group: {group}", "      access: public",
                "      contract:", "        enforced: true"]
    elif model.layer == "marts":
        out += ["    config:", f"      group: {group}", "      access: protected"]
    described = model.columns if model.layer in ("marts", "base") or model.public else model.columns[:1]
    out.append("    columns:")
    for index, (col, typ) in enumerate(described):
        words = col.replace("_", " ")
        out += [f"      - name: {col}", f"        description: {_q(f'The {words} of the row.')}"]
        if model.public:
            out.append(f"        data_type: {typ}")
            if index == 0:
                out += ["        constraints:", "          - type: not_null"]
        if index == 0 and model.layer == "staging":
            out += ["        data_tests:", "          - not_null"]
        elif index == 0 and model.layer == "marts":
            out += ["        data_tests:", "          - unique", "          - not_null"]
    return out


def _dbt_project_yml(project: ProjectPlan) -> str:
    layers = sorted({m.layer for m in project.models})
    materialized = {"base": "table", "staging": "view", "intermediate": "view", "marts": "table"}
    schema = {"base": "raw", "staging": "staging", "intermediate": "staging", "marts": "marts"}
    config = "".join(
        f"    {layer}:\n      +materialized: {materialized[layer]}\n      +schema: {schema[layer]}\n"
        for layer in layers
    )
    return (
        f"name: {project.name}\nversion: \"1.0.0\"\nprofile: {project.name}\n"
        "require-dbt-version: [\">=1.11.0\", \"<1.12.0\"]\n\n"
        "flags:\n  send_anonymous_usage_stats: false\n\n"
        "model-paths: [\"models\"]\nmacro-paths: [\"macros\"]\n\n"
        "clean-targets:\n  - target\n  - logs\n\n"
        f"models:\n  {project.name}:\n{config}"
    )


def profiles_yml(plan: MeshPlan) -> str:
    """Every project's DuckDB profile, by the mesh's conventions (own file under MESH_BUILD_DIR,
    upstreams ATTACHed read-only from MESH_WAREHOUSE_DIR under their own names)."""
    warehouse = "env_var('MESH_WAREHOUSE_DIR', 'warehouse')"
    out = [
        "# Generated by the mesh-scale benchmark (mesh/bench/mesh_generate.py): DuckDB only.\n"
        "# A project writes its own file under $MESH_BUILD_DIR (the mesh's audit copy) or\n"
        "# $MESH_WAREHOUSE_DIR; it ATTACHes its upstreams' files read-only under their names.\n"
    ]
    for project in plan.projects:
        out.append(
            f"\n{project.name}:\n  target: local\n  outputs:\n    local:\n      type: duckdb\n"
            f"      path: \"{{{{ env_var('MESH_BUILD_DIR', {warehouse}) }}}}/{project.name}.duckdb\"\n"
            f"      schema: main\n      threads: {plan.spec.threads}\n"
        )
        if project.upstreams:
            out.append("      attach:\n")
            for up in project.upstreams:
                out.append(
                    f"        - path: \"{{{{ {warehouse} }}}}/{up}.duckdb\"\n"
                    f"          alias: {up}\n          read_only: true\n"
                )
    return "".join(out)


def mesh_yml(plan: MeshPlan) -> str:
    lines = [
        "# Generated by the mesh-scale benchmark (mesh/bench/mesh_generate.py).",
        "version: 1",
        "default_target: local",
        "require_contracts: true",
        "",
        "projects:",
    ]
    for project in plan.projects:
        lines += [f"  {project.name}:", f"    path: {project.name}"]
        if project.upstreams:
            lines.append(f"    upstreams_via: {project.via}")
    lines += ["", "targets:", "  local:", "    registry: file://registry", "    env: local", ""]
    return "\n".join(lines)


def write_project(dest: Path, plan: MeshPlan, project: ProjectPlan) -> None:
    """Write one project's folder."""
    dest.mkdir(parents=True)
    (dest / "dbt_project.yml").write_text(_dbt_project_yml(project))
    (dest / "macros").mkdir()
    (dest / "macros" / "generate_schema_name.sql").write_text(MACROS["generate_schema_name.sql"])
    if project.upstreams:
        (dest / "dependencies.yml").write_text(
            "# Cross-project dependencies (dbt Mesh): the mesh's sync reads this list.\nprojects:\n"
            + "".join(f"  - name: {up}\n" for up in project.upstreams)
        )
    group = f"{project.name}_team"
    groups = [
        "version: 2", "", "groups:", f"  - name: {group}", "    owner:",
        f"      name: {project.name} team", f"      email: {project.name}-team@example.com",
    ]
    (dest / "models").mkdir()
    (dest / "models" / "_groups.yml").write_text("\n".join(groups) + "\n")
    by_name = {m.name: m for m in project.models}
    by_layer: dict[str, list[Model]] = {}
    for model in project.models:
        by_layer.setdefault(model.layer, []).append(model)
    for layer, members in by_layer.items():
        folder = dest / "models" / layer
        folder.mkdir()
        yml = ["version: 2", "", "models:"]
        for model in members:
            if layer == "base":
                sql = _base_sql(model, plan.spec.rows)
            elif layer == "staging":
                sql = _staging_sql(model, project.via)
            else:
                sql = _model_sql(model, by_name)
            (folder / f"{model.name}.sql").write_text(sql)
            yml += _model_yaml(project.name, model, group)
        (folder / f"_{layer}.yml").write_text("\n".join(yml) + "\n")


def scenario_plan(plan: MeshPlan) -> dict[str, Any]:
    """What each benchmark scenario changes, and which projects it must rebuild."""
    leaves = [p for p in plan.projects if p.role == LEAF]
    cores = [p for p in plan.projects if p.role == CORE]
    middles = [p for p in plan.projects if p.role == MIDDLE]
    leaf = leaves[-1]
    leaf_model = next(m for m in reversed(leaf.models) if m.layer == "marts")
    producer = cores[0]
    private = next(m for m in producer.models if m.layer == "intermediate")

    def rank(p: ProjectPlan) -> tuple[int, int]:
        consumers = plan.consumers_of(p.name)
        has_middle = any(plan.project(c).role == MIDDLE for c in consumers)
        return (len(consumers), int(has_middle))

    interface = max(middles, key=rank)  # max keeps the first of equals: deterministic
    public = interface.public[0]
    return {
        "one_consumer": {
            "project": leaf.name,
            "file": f"{leaf.name}/{leaf_model.sql_file}",
            "builds": [leaf.name],
        },
        "producer_private": {
            "project": producer.name,
            "file": f"{producer.name}/{private.sql_file}",
            "consumers": plan.consumers_of(producer.name),
            "builds": [producer.name],
        },
        "interface": {
            "project": interface.name,
            "file": f"{interface.name}/models/marts/_marts.yml",
            "model": public.name,
            "description": public_description(interface.name, public),
            "consumers": plan.consumers_of(interface.name),
            "builds": [interface.name, *plan.consumers_of(interface.name)],
        },
    }


def write_mesh(dest: Path, spec: MeshSpec) -> dict[str, Any]:
    """Write the whole mesh under `dest` (which must not exist yet); return its `plan.json`."""
    plan = plan_mesh(spec)
    dest.mkdir(parents=True)
    (dest / "mesh.yml").write_text(mesh_yml(plan))
    (dest / "profiles").mkdir()
    (dest / "profiles" / "profiles.yml").write_text(profiles_yml(plan))
    for project in plan.projects:
        write_project(dest / project.name, plan, project)
    info = {
        "spec": asdict(spec),
        "projects": {
            p.name: {
                "role": p.role,
                "upstreams": p.upstreams,
                "via": p.via if p.upstreams else None,
                "models": len(p.models),
                "public": len(p.public),
                "tests": sum(
                    2 if m.layer == "marts" else 1 if m.layer == "staging" else 0 for m in p.models
                ),
            }
            for p in plan.projects
        },
        "scenarios": scenario_plan(plan),
    }
    (dest / "plan.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return info
