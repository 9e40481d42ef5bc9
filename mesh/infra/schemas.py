"""Terraform checked against the providers' own schemas, offline.

`terraform validate` needs the providers, which `terraform init` downloads from a registry that is
not always reachable (and checking one version proves nothing about the others a constraint
allows). The prebuilt CDK for Terraform provider packages on PyPI carry the same schema: each ships
a jsii assembly generated from it, with every resource, data source, argument, nested block, type
and required flag. This module

- downloads the wheels pinned in `provider-schemas.toml` (by hash, without dependencies, never
  importing them: the assembly is read out of the wheel's `_jsii/*.jsii.tgz`), checks that each
  was generated from the provider version the pin names, and keeps a compact copy of the schema
  in a cache folder (`.cache/provider-schemas`, or `$MESH_PROVIDER_SCHEMA_CACHE`), so a warm run
  needs no network and takes well under a second per version;
- parses every `.tf` file with python-hcl2 and checks each resource and data source, each
  argument, nested block (and `dynamic` block) and `lifecycle.ignore_changes` entry, against
  every pinned provider version that the tree's `required_providers` constraints allow: unknown
  names, missing required arguments and blocks, a block written as an argument or the reverse,
  too many blocks where one is allowed, and literal values of the wrong type.

Names in the assembly are camelCase; each argument's documentation link carries its Terraform
name (`…/resources/s3_bucket_versioning#status`), which is used as is. Whether a nested object is
a block or an argument comes from the package's generated JavaScript (`isBlock`), which only
newer packages have; for older ones that one check is skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.core.errors import ConfigError, MeshError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_FILE = REPO_ROOT / "provider-schemas.toml"
CACHE_ENV = "MESH_PROVIDER_SCHEMA_CACHE"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "provider-schemas"
# Bump when the shape of an extracted schema changes: older cache files are then re-extracted.
SCHEMA_FORMAT = 1

# Arguments Terraform itself gives every resource and data source (meta-arguments), and blocks.
RESOURCE_META = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle"})
RESOURCE_META_BLOCKS = frozenset({"lifecycle", "provisioner", "connection"})
DATA_META = frozenset({"count", "for_each", "depends_on", "provider", "lifecycle"})
PRIMITIVES = {"string": "string", "number": "number", "boolean": "bool", "any": "any",
              "json": "any", "date": "string"}  # fmt: skip
_DOCS_LINK = re.compile(r"registry\.terraform\.io/providers/([\w-]+/[\w-]+)/(\d+\.\d+\.\d+)/docs")
_TYPE_LINK = re.compile(r"/docs/(resources|data-sources)/\w+ ([a-z0-9_]+)\}")
_ANCHOR = re.compile(r"#([A-Za-z0-9_]+) [\w.]+#[\w]+\}")
_HCL_ENTRY = re.compile(r"^\s+(\w+): \{\s*\n\s+value: [^\n]*\n\s+isBlock: (true|false),", re.M)
_HCL_FUNCTION = re.compile(r"^function (\w+)ToHclTerraform\(struct\) \{$", re.M)
_HCL_CLASS = re.compile(r"^class (\w+) extends cdktf\.Terraform(?:Resource|DataSource) \{$", re.M)


class ProviderSchemaError(MeshError):
    """A provider schema could not be downloaded, read or trusted (exit code 2)."""


# --- pins ----------------------------------------------------------------------------------------


class SchemaPin(BaseModel):
    """One package version to check against, and the provider version it must come from."""

    model_config = ConfigDict(extra="forbid")

    package_version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    provider_version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ProviderPins(BaseModel):
    """A provider, the PyPI package of its schemas, and the versions pinned for the check."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(pattern=r"^[a-z0-9-]+/[a-z0-9-]+$")
    package: str = Field(pattern=r"^[a-z0-9-]+$")
    packaged: tuple[str, str]
    missing: list[str] = Field(default_factory=list)
    schemas: list[SchemaPin] = Field(alias="schema", min_length=1)

    @property
    def name(self) -> str:
        return self.source.split("/", 1)[1]


class SchemaPins(BaseModel):
    """The contents of provider-schemas.toml."""

    model_config = ConfigDict(extra="forbid")

    provider: list[ProviderPins]

    def for_source(self, source: str) -> ProviderPins | None:
        return next((p for p in self.provider if p.source == source), None)


def load_pins(path: Path = SCHEMAS_FILE) -> SchemaPins:
    """Read and validate the pins file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path.name}: {exc}") from exc
    try:
        return SchemaPins.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"{path.name}: {where}: {error['msg']}") from exc


# --- versions and constraints --------------------------------------------------------------------

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    parts = text.strip().lstrip("v").split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"{text!r} is not a version Terraform constraints can name (x.y.z)")
    major, minor, patch = (int(p) for p in [*parts, "0", "0"][:3])
    return major, minor, patch


def format_version(version: Version) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Constraint:
    """A Terraform version constraint such as `>= 5.0, < 7.0` or `~> 2.1`."""

    text: str

    def _terms(self) -> list[tuple[str, Version, int]]:
        terms = []
        for raw in self.text.split(","):
            match = re.fullmatch(r"\s*(=|!=|>=|<=|>|<|~>)?\s*v?([0-9][0-9.]*)\s*", raw)
            if not match:
                raise ConfigError(f"cannot read the version constraint {self.text!r}")
            version = parse_version(match.group(2))
            terms.append((match.group(1) or "=", version, len(match.group(2).split("."))))
        return terms

    def allows(self, version: Version) -> bool:
        for op, bound, given in self._terms():
            if op == "~>":
                kept = max(given - 1, 1)
                if version < bound or version[:kept] != bound[:kept]:
                    return False
            elif not {
                "=": version == bound,
                "!=": version != bound,
                ">": version > bound,
                ">=": version >= bound,
                "<": version < bound,
                "<=": version <= bound,
            }[op]:
                return False
        return True

    def bounds(self) -> list[Version]:
        return [version for _op, version, _given in self._terms()]


# --- download and extraction ---------------------------------------------------------------------


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else DEFAULT_CACHE


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two test workers or shells must not download and extract the same package at once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def schema_file(pins: ProviderPins, pin: SchemaPin, cache: Path) -> Path:
    return cache / f"{pins.package}-{pin.package_version}.v{SCHEMA_FORMAT}.json"


def download_wheel(package: str, pin: SchemaPin, dest: Path) -> Path:
    """`pip download` one wheel, hash-checked and without dependencies, into `dest`."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{package}=={pin.package_version} --hash=sha256:{pin.sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--require-hashes", "--disable-pip-version-check", "--no-input", "--quiet",
        "-r", str(requirements), "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        tail = " ".join((result.stderr or result.stdout).split()[-40:])
        raise ProviderSchemaError(
            f"cannot download {package}=={pin.package_version} (the schema of provider "
            f"{pin.provider_version}): {tail or 'pip found no wheel'}; the package index is needed "
            "once per pinned version, later runs read the cache (or lint with --skip-schemas)"
        )
    return wheels[0]


def _hcl_syntax(tar: tarfile.TarFile) -> dict[tuple[str, str], dict[str, bool]]:
    """Which nested objects are blocks, from the generated JavaScript (newer packages only).

    Keyed by (source file of the module, struct or class name); each value maps an argument's
    Terraform name to True for a block, False for an argument.
    """
    found: dict[tuple[str, str], dict[str, bool]] = {}
    for member in tar:
        name = member.name
        if not (member.isfile() and name.startswith("package/lib/") and name.endswith(".js")):
            continue
        handle = tar.extractfile(member)
        if handle is None:
            continue
        text = handle.read().decode("utf-8")
        if "isBlock" not in text:
            continue
        module = "src/" + name.removeprefix("package/lib/").removesuffix(".js") + ".ts"
        starts = [
            (m.start(), m.group(1)[0].upper() + m.group(1)[1:])
            for m in _HCL_FUNCTION.finditer(text)
        ]
        starts += [(m.start(), m.group(1)) for m in _HCL_CLASS.finditer(text)]
        starts.sort()
        for index, (start, owner) in enumerate(starts):
            end = starts[index + 1][0] if index + 1 < len(starts) else len(text)
            chunk = text[start:end]
            if not _HCL_FUNCTION.match(chunk):
                # A class: only its synthesizeHclAttributes() says what its own arguments are.
                at = chunk.find("synthesizeHclAttributes()")
                if at < 0:
                    continue
                chunk = chunk[at:]
            found[(module, owner)] = {
                m.group(1): m.group(2) == "true" for m in _HCL_ENTRY.finditer(chunk)
            }
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class _Converter:
    """Turns the jsii structs of an assembly into the compact schema this module checks against."""

    def __init__(
        self, assembly: Mapping[str, Any], syntax: Mapping[tuple[str, str], dict[str, bool]]
    ):
        self.types: Mapping[str, Any] = assembly["types"]
        self.prefix = assembly["name"] + "."
        self.syntax = syntax
        self.structs: dict[str, dict[str, dict[str, Any]]] = {}

    def type_of(self, ref: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        """(type, nested struct id, nesting) of a jsii type reference."""
        if "primitive" in ref:
            return PRIMITIVES.get(ref["primitive"], "any"), None, None
        if "collection" in ref:
            kind = "list" if ref["collection"]["kind"] == "array" else "map"
            inner, struct, _ = self.type_of(ref["collection"]["elementtype"])
            if struct:
                return kind, struct, kind
            return f"{kind}({inner})", None, None
        if "union" in ref:
            options = [t for t in ref["union"]["types"] if t.get("fqn") != "cdktf.IResolvable"]
            return self.type_of(options[0]) if len(options) == 1 else ("any", None, None)
        fqn = ref.get("fqn", "")
        if self.types.get(fqn, {}).get("datatype"):
            return "object", self.struct(fqn), "single"
        return "any", None, None

    def struct(self, fqn: str, owner: str | None = None) -> str:
        """Convert a struct (once) and return its id."""
        struct_id = fqn.removeprefix(self.prefix)
        if struct_id in self.structs:
            return struct_id
        spec = self.types[fqn]
        module = spec.get("locationInModule", {}).get("filename", "")
        syntax = self.syntax.get((module, owner or spec["name"]), {})
        arguments: dict[str, dict[str, Any]] = {}
        self.structs[struct_id] = arguments  # before the recursion: structs may nest themselves
        for prop in spec.get("properties", []):
            docs = prop.get("docs", {})
            anchor = _ANCHOR.search(f"{docs.get('summary', '')} {docs.get('remarks', '')}")
            name = anchor.group(1) if anchor else _snake(prop["name"])
            kind, nested, nesting = self.type_of(prop["type"])
            argument: dict[str, Any] = {"required": not prop.get("optional", False), "type": kind}
            if nested:
                argument["nested"] = nested
                argument["nesting"] = nesting
                if name in syntax:
                    argument["block"] = syntax[name]
            arguments[name] = argument
        return struct_id


def extract_schema(wheel: Path) -> dict[str, Any]:
    """The compact schema of every resource and data source in a provider package's wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            inner = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
            if len(inner) != 1:
                raise ProviderSchemaError(f"{wheel.name} holds no single jsii assembly")
            blob = archive.read(inner[0])
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            handle = tar.extractfile("package/.jsii")
            if handle is None:
                raise ProviderSchemaError(f"{wheel.name}: the assembly has no .jsii")
            assembly = orjson.loads(handle.read())
            syntax = _hcl_syntax(tar)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError, orjson.JSONDecodeError) as exc:
        raise ProviderSchemaError(f"cannot read the jsii assembly in {wheel.name}: {exc}") from exc
    converter = _Converter(assembly, syntax)
    source = version = None
    resources: dict[str, str] = {}
    data_sources: dict[str, str] = {}
    for spec in assembly["types"].values():
        if spec.get("kind") != "class":
            continue
        summary = spec.get("docs", {}).get("summary", "")
        base = spec.get("base")
        if base == "cdktf.TerraformProvider":
            link = _DOCS_LINK.search(summary)
            if link:
                source, version = link.group(1), link.group(2)
            continue
        if base not in {"cdktf.TerraformResource", "cdktf.TerraformDataSource"}:
            continue
        named = _TYPE_LINK.search(summary)
        params = spec.get("initializer", {}).get("parameters", [])
        config = next((p["type"].get("fqn") for p in params if p["name"] == "config"), None)
        if not named or not config:
            continue
        target = resources if base == "cdktf.TerraformResource" else data_sources
        target[named.group(2)] = converter.struct(config, owner=spec["name"])
    if not source or not version or not resources:
        raise ProviderSchemaError(f"{wheel.name}: no provider schema found in its jsii assembly")
    return {
        "format": SCHEMA_FORMAT,
        "package": assembly["name"],
        "package_version": assembly["version"],
        "source": source,
        "provider_version": version,
        "block_syntax": bool(syntax),
        "resources": resources,
        "data_sources": data_sources,
        "structs": converter.structs,
    }


def ensure_schema(pins: ProviderPins, pin: SchemaPin, cache: Path | None = None) -> Path:
    """The cached schema of one pinned package, downloaded and extracted on first use."""
    cache = cache or cache_dir()
    path = schema_file(pins, pin, cache)
    if path.is_file():
        return path
    with _file_lock(cache / f".{path.stem}.lock"):
        if path.is_file():
            return path
        with tempfile.TemporaryDirectory(prefix="wheel-", dir=cache) as folder:
            wheel = download_wheel(pins.package, pin, Path(folder))
            schema = extract_schema(wheel)
        found = (schema["source"].lower(), schema["provider_version"])
        if found != (pins.source, pin.provider_version):
            raise ProviderSchemaError(
                f"{pins.package}=={pin.package_version} was generated from {found[0]} {found[1]}, "
                f"not {pins.source} {pin.provider_version}: fix provider-schemas.toml"
            )
        partial = path.with_suffix(".partial")
        partial.write_bytes(orjson.dumps(schema))
        os.replace(partial, path)
    return path


@lru_cache(maxsize=16)
def _load_schema(path: Path, mtime: float) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def load_schema(path: Path) -> dict[str, Any]:
    """A cached schema (kept in memory per process: tests lint many trees)."""
    try:
        return _load_schema(path, path.stat().st_mtime)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ProviderSchemaError(f"cannot read the cached schema {path}: {exc}") from exc


# --- the Terraform tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class TfBlock:
    """A resource or data source block as python-hcl2 reads it (blocks marked)."""

    kind: str  # "resource" or "data"
    type: str
    name: str
    body: Mapping[str, Any]
    file: Path

    @property
    def address(self) -> str:
        return f"{'data.' if self.kind == 'data' else ''}{self.type}.{self.name}"


@dataclass
class TfTree:
    root: Path
    blocks: list[TfBlock] = field(default_factory=list)
    # Per module folder: local provider name -> (source, version constraint or "").
    providers: dict[Path, dict[str, tuple[str, str]]] = field(default_factory=dict)
    # Per module folder: variable name -> whether it has a default.
    variables: dict[Path, dict[str, bool]] = field(default_factory=dict)
    # Module calls: (file, name, body).
    modules: list[tuple[Path, str, Mapping[str, Any]]] = field(default_factory=list)

    def label(self, path: Path) -> str:
        return f"{self.root.name}/{path.relative_to(self.root).as_posix()}"

    def source_of(self, block: TfBlock) -> str:
        """The provider source that serves `block`: its `provider` meta-argument or type prefix."""
        provider = block.body.get("provider")
        local = block.type.split("_", 1)[0]
        if isinstance(provider, str):
            local = _unwrap(provider).split(".", 1)[0] or local
        source, _ = self.providers.get(block.file.parent, {}).get(local, (f"hashicorp/{local}", ""))
        return source

    def constraints(self) -> dict[str, list[str]]:
        """Every version constraint of each provider source, over all modules of the tree."""
        found: dict[str, list[str]] = {}
        for module in self.providers.values():
            for source, constraint in module.values():
                found.setdefault(source, [])
                if constraint and constraint not in found[source]:
                    found[source].append(constraint)
        return found


def _unwrap(value: str) -> str:
    return value[2:-1] if value.startswith("${") and value.endswith("}") else value


def _is_block(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__is_block__") is True


def _blocks(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if _is_block(item)]


def load_tree(root: Path) -> TfTree:
    """Parse every .tf file under `root` (skipping provider caches) with blocks marked."""
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=True, with_comments=False
    )
    tree = TfTree(root=root)
    paths = sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)
    for path in paths:
        try:
            data = hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=options)
        except Exception as exc:  # python-hcl2 raises lark errors of many types
            raise ConfigError(f"cannot parse {tree.label(path)}: {exc}") from exc
        for settings in data.get("terraform", []):
            for required in _blocks(settings.get("required_providers", [])):
                for local, spec in required.items():
                    if local.startswith("__") or not isinstance(spec, dict):
                        continue
                    source = str(spec.get("source") or f"hashicorp/{local}").lower()
                    source = source.removeprefix("registry.terraform.io/")
                    constraint = str(spec.get("version") or "")
                    tree.providers.setdefault(path.parent, {})[local] = (source, constraint)
        for entry in data.get("variable", []):
            for name, body in entry.items():
                if not name.startswith("__"):
                    tree.variables.setdefault(path.parent, {})[name] = "default" in body
        for entry in data.get("module", []):
            for name, body in entry.items():
                if not name.startswith("__"):
                    tree.modules.append((path, name, body))
        for kind in ("resource", "data"):
            for entry in data.get(kind, []):
                for type_, named in entry.items():
                    if type_.startswith("__"):
                        continue
                    for name, body in named.items():
                        if not name.startswith("__"):
                            tree.blocks.append(TfBlock(kind, type_, name, body, path))
    return tree


# --- checking ------------------------------------------------------------------------------------


def _literal_problem(kind: str, value: Any) -> str | None:
    """Why a literal value cannot be the argument's type, or None (expressions are not checked)."""
    if value is None or kind == "any":
        return None
    if isinstance(value, str) and ("${" in value or "%{" in value):
        return None
    if kind == "string":
        return "must be a string" if isinstance(value, (list, dict)) else None
    if kind == "number":
        if isinstance(value, (bool, list, dict)):
            return "must be a number"
        if isinstance(value, str) and not re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
            return f"must be a number, not {orjson.dumps(value).decode()}"
        return None
    if kind == "bool":
        if isinstance(value, bool) or (isinstance(value, str) and value in {"true", "false"}):
            return None
        return f"must be true or false, not {orjson.dumps(value).decode()}"
    inner = re.fullmatch(r"(list|map)\((.*)\)", kind)
    if inner:
        container, element = inner.groups()
        if container == "list":
            if not isinstance(value, list):
                return "must be a list"
            items = value
        else:
            if not isinstance(value, dict) or _is_block(value):
                return "must be a map"
            items = list(value.values())
        for item in items:
            problem = _literal_problem(element, item)
            if problem:
                return f"holds an element that {problem}"
    return None


class _Checker:
    """Checks one block against one provider schema; collects one message per problem."""

    def __init__(self, schema: Mapping[str, Any]):
        self.structs: Mapping[str, Mapping[str, Any]] = schema["structs"]
        self.problems: list[str] = []

    def check_block(self, block: TfBlock, struct_id: str) -> None:
        meta = RESOURCE_META if block.kind == "resource" else DATA_META
        arguments = self.structs[struct_id]
        for lifecycle in _blocks(block.body.get("lifecycle", [])):
            for entry in lifecycle.get("ignore_changes", []) or []:
                path = _unwrap(str(entry))
                head = re.split(r"[.\[]", path, maxsplit=1)[0]
                if head != "all" and head not in arguments:
                    self.problems.append(
                        f'lifecycle ignore_changes names unknown argument "{head}"'
                    )
        meta_blocks = RESOURCE_META_BLOCKS if block.kind == "resource" else frozenset({"lifecycle"})
        self.check_body(block.body, struct_id, "", meta | meta_blocks)

    def check_body(
        self, body: Mapping[str, Any], struct_id: str, inside: str, skip: frozenset[str]
    ) -> None:
        arguments = self.structs[struct_id]
        where = f" in block {inside}" if inside else ""
        present: set[str] = set()
        for key, value in body.items():
            if key.startswith("__") or key in skip:
                continue
            if key == "dynamic":
                for dynamic in value if isinstance(value, list) else [value]:
                    for label, spec in dynamic.items():
                        if label.startswith("__"):
                            continue
                        present.add(label)
                        self.check_dynamic(label, spec, arguments.get(label), inside)
                continue
            argument = arguments.get(key)
            if argument is None:
                kind = "block" if _blocks(value) else "argument"
                self.problems.append(f'unknown {kind} "{key}"{where}')
                continue
            present.add(key)
            self.check_value(key, value, argument, inside)
        for name, argument in arguments.items():
            if argument["required"] and name not in present:
                kind = "block" if argument.get("block") else "argument"
                self.problems.append(f'missing required {kind} "{name}"{where}')

    def check_dynamic(
        self, label: str, spec: Any, argument: Mapping[str, Any] | None, inside: str
    ) -> None:
        where = f" in block {inside}" if inside else ""
        if argument is None or "nested" not in argument:
            self.problems.append(f'dynamic block "{label}"{where}: no such nested block')
            return
        if argument.get("block") is False:
            self.problems.append(f'dynamic block "{label}"{where}: "{label}" is an argument')
        path = f"{inside}.{label}" if inside else label
        for content in _blocks(spec.get("content", []) if isinstance(spec, dict) else []):
            self.check_body(content, argument["nested"], path, frozenset())

    def check_value(self, key: str, value: Any, argument: Mapping[str, Any], inside: str) -> None:
        where = f" in block {inside}" if inside else ""
        path = f"{inside}.{key}" if inside else key
        blocks = _blocks(value)
        nested = argument.get("nested")
        if not nested:
            if blocks:
                self.problems.append(f'"{key}"{where} is an argument, not a block: write {key} = …')
                return
            problem = _literal_problem(argument["type"], value)
            if problem:
                self.problems.append(f'argument "{key}"{where} {problem}')
            return
        if blocks:
            if argument.get("block") is False:
                self.problems.append(f'"{key}"{where} is an argument, not a block: write {key} = …')
            if argument.get("nesting") == "single" and len(blocks) > 1:
                self.problems.append(f'"{key}"{where} allows one block, found {len(blocks)}')
            for item in blocks:
                self.check_body(item, nested, path, frozenset())
            return
        if argument.get("block") is True:
            self.problems.append(f'"{key}"{where} is a block: write {key} {{ … }}, not {key} = …')
            return
        # A nested argument written as an object literal: its keys are checked, values are not.
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and argument.get("nesting") != "map":
                self.check_body(item, nested, path, frozenset())


@dataclass
class SchemaCheck:
    """What the schema check found, and which provider versions it checked."""

    # (where, message): where is `file: address`, the message ends with the versions it holds for.
    problems: list[tuple[str, str]] = field(default_factory=list)
    # Calls of local modules with an argument the module does not declare, or without a required one.
    module_calls: list[tuple[str, str]] = field(default_factory=list)
    checked: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return "; ".join(
            f"{source.split('/', 1)[1]} {', '.join(versions)}"
            for source, versions in sorted(self.checked.items())
        )


def _coverage_note(pins: ProviderPins, constraint: Constraint, checked: list[str]) -> str:
    """Which allowed versions the check covers and which have no package."""
    low, high = (parse_version(v) for v in pins.packaged)
    unpackaged = [v for v in pins.missing if constraint.allows(parse_version(v))]
    below = [b for b in constraint.bounds() if b < low and constraint.allows(b)]
    if any(format_version(b) not in pins.missing for b in below):
        unpackaged.append(f"those below {pins.packaged[0]}")
    if constraint.allows((high[0], high[1], high[2] + 1)) or constraint.allows(
        (high[0], high[1] + 1, 0)
    ):
        unpackaged.append(f"those after {pins.packaged[1]} (no package was published after it)")
    text = f"{pins.source} {constraint.text}: checked {', '.join(checked)}"
    if unpackaged:
        text += f"; allowed but without a package: {', '.join(unpackaged)}"
    return text


def check_tree(
    root: Path, pins_file: Path = SCHEMAS_FILE, cache: Path | None = None
) -> SchemaCheck:
    """Check every resource and data source under `root` against each allowed pinned schema."""
    pins = load_pins(pins_file)
    tree = load_tree(root)
    result = SchemaCheck(module_calls=check_module_calls(tree))
    constraints = tree.constraints()
    used = {tree.source_of(block) for block in tree.blocks}
    schemas: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for source in sorted(used):
        provider = pins.for_source(source)
        if provider is None:
            result.problems.append(
                (f"{root.name}: provider {source}", f"no package pinned in {pins_file.name}")
            )
            continue
        constraint = Constraint(", ".join(constraints.get(source, [])) or ">= 0.0.0")
        allowed = [
            p for p in provider.schemas if constraint.allows(parse_version(p.provider_version))
        ]
        skipped = [p.provider_version for p in provider.schemas if p not in allowed]
        if not allowed:
            result.problems.append(
                (
                    f"{root.name}: provider {source}",
                    f"none of the pinned versions ({', '.join(skipped)}) is allowed by "
                    f"{constraint.text}: pin the lowest and the highest allowed version that has "
                    f"a package in {pins_file.name}",
                )
            )
            continue
        versions = [p.provider_version for p in allowed]
        result.checked[source] = versions
        result.notes.append(_coverage_note(provider, constraint, versions))
        if skipped:
            result.notes.append(
                f"{source}: pinned {', '.join(skipped)} not checked, outside {constraint.text}"
            )
        schemas[source] = [
            (p.provider_version, load_schema(ensure_schema(provider, p, cache))) for p in allowed
        ]
    for block in tree.blocks:
        source = tree.source_of(block)
        where = f"{tree.label(block.file)}: {block.address}"
        by_message: dict[str, list[str]] = {}
        for version, schema in schemas.get(source, []):
            table = schema["resources"] if block.kind == "resource" else schema["data_sources"]
            checker = _Checker(schema)
            struct_id = table.get(block.type)
            if struct_id is None:
                what = "resource type" if block.kind == "resource" else "data source"
                checker.problems.append(f'unknown {what} "{block.type}"')
            else:
                checker.check_block(block, struct_id)
            for message in dict.fromkeys(checker.problems):
                by_message.setdefault(message, []).append(version)
        name = source.split("/", 1)[1]
        for message, versions in by_message.items():
            result.problems.append((where, f"{message} ({name} provider {', '.join(versions)})"))
    return result


MODULE_META = frozenset({"source", "version", "count", "for_each", "providers", "depends_on"})


def check_module_calls(tree: TfTree) -> list[tuple[str, str]]:
    """Each call of a local module passes only variables it declares, and every required one."""
    found = []
    for path, name, body in tree.modules:
        source = body.get("source")
        if not isinstance(source, str) or not source.startswith(("./", "../")):
            continue  # registry and git modules are not in the tree
        folder = (path.parent / source).resolve()
        where = f"{tree.label(path)}: module.{name}"
        declared = next((v for f, v in tree.variables.items() if f.resolve() == folder), None)
        if declared is None:
            if not folder.is_dir():
                found.append((where, f"source {source} is not a folder of the tree"))
            continue
        passed = {k for k in body if not k.startswith("__") and k not in MODULE_META}
        for argument in sorted(passed - set(declared)):
            found.append((where, f'unknown argument "{argument}": {source} has no such variable'))
        for variable in sorted(v for v, has_default in declared.items() if not has_default):
            if variable not in passed:
                found.append((where, f'missing required argument "{variable}" of {source}'))
    return found


def prefetch(pins_file: Path = SCHEMAS_FILE, cache: Path | None = None) -> list[Path]:
    """Download and extract every pinned schema (CI warms the cache with this)."""
    pins = load_pins(pins_file)
    return [ensure_schema(p, pin, cache) for p in pins.provider for pin in p.schemas]
