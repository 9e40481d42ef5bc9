"""YAML files edited round-trip (ruamel): comments, order, quoting and indentation kept. What the
mesh writes into a team's own files (mesh.yml, profiles.yml, dependencies.yml, an adopted
sources file) goes through here, so a diff shows only what changed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from mesh.core.errors import ConfigError


class RoundTrip:
    """A YAML file edited round-trip: comments, order, quoting and indentation kept."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.exists = path.is_file()
        self.text = path.read_text(encoding="utf-8") if self.exists else ""
        self.yaml = YAML()
        self.yaml.preserve_quotes = True
        self.yaml.width = 4096
        try:
            data, indent, seq_indent = load_yaml_guess_indent(self.text, yaml=self.yaml)
        except YAMLError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{what} {path} is not valid YAML: {first}") from exc
        if seq_indent is None:
            self.yaml.indent(mapping=indent or 2, sequence=4, offset=2)
        else:
            self.yaml.indent(mapping=2, sequence=indent or 4, offset=seq_indent)
        if data is not None and not isinstance(data, CommentedMap):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        self.empty = data is None
        self.doc: CommentedMap = data if data is not None else CommentedMap()

    def dump(self) -> bytes:
        out = io.StringIO()
        self.yaml.dump(self.doc, out)
        text = out.getvalue()
        if self.empty and self.text.strip():
            # Only comments: ruamel drops them on load; keep them above what is added.
            text = self.text.rstrip("\n") + "\n\n" + text
        return text.encode("utf-8")


def _leaf(container: Any, key: Any) -> tuple[Any, Any]:
    """The last scalar-or-flow item under container[key], where its trailing comment lives."""
    while True:
        value = container[key]
        if isinstance(value, CommentedMap) and len(value) and not value.fa.flow_style():
            container, key = value, list(value.keys())[-1]
        elif isinstance(value, CommentedSeq) and len(value) and not value.fa.flow_style():
            container, key = value, len(value) - 1
        else:
            return container, key


def _slot(container: Any) -> int:
    return 2 if isinstance(container, CommentedMap) else 0


def _split_tail(container: Any, key: Any, blank: bool) -> str:
    """Keep the end-of-line comment of container[key]; return what followed it (blank lines,
    comments of the next item), which belongs after whatever is inserted next."""
    slot = _slot(container)
    entry = container.ca.items.get(key)
    token = entry[slot] if entry and len(entry) > slot else None
    if token is None:
        if blank:
            item = container.ca.items.setdefault(key, [None, None, None, None])
            item[slot] = CommentToken("\n\n", CommentMark(0), None)
        return ""
    head, sep, tail = token.value.partition("\n")
    token.value = head + sep + ("\n" if blank else "")
    return tail


def _set_tail(container: Any, key: Any, tail: str) -> None:
    if tail:
        item = container.ca.items.setdefault(key, [None, None, None, None])
        item[_slot(container)] = CommentToken("\n" + tail, CommentMark(0), None)


def yaml_add(parent: Any, key: Any, value: Any, before: Any = None, blank: bool = False) -> None:
    """Add `key: value` to a round-trip mapping (or `value` to a sequence when key is None), at the
    end or before `before`, keeping the comments and blank lines that followed the previous item
    after the new one. `blank` puts a blank line before the new item."""
    if isinstance(parent, CommentedSeq):
        prev = _leaf(parent, len(parent) - 1) if len(parent) else None
        tail = _split_tail(*prev, blank) if prev else ""
        parent.append(value)
        _set_tail(*_leaf(parent, len(parent) - 1), tail)
        return
    keys = list(parent.keys())
    pos = keys.index(before) if before in keys else len(keys)
    prev = _leaf(parent, keys[pos - 1]) if pos else None
    tail = _split_tail(*prev, blank) if prev else ""
    if pos == len(keys):
        parent[key] = value
    else:
        parent.insert(pos, key, value)
    _set_tail(*_leaf(parent, key), tail)
    if before in keys and not tail and prev is not None:
        _set_tail(*_leaf(parent, key), "\n")  # keep a blank line before the next top-level key


def yaml_replace(parent: CommentedMap, key: str, value: Any) -> None:
    """Replace an empty or flow value (`projects: {}`) by a block collection."""
    container, leaf_key = _leaf(parent, key)
    tail = _split_tail(container, leaf_key, blank=False)
    parent[key] = value
    _set_tail(*_leaf(parent, key), tail)


def _block() -> CommentedMap:
    node = CommentedMap()
    node.fa.set_block_style()
    return node


def _flow(**items: Any) -> CommentedMap:
    node = CommentedMap(items)
    node.fa.set_flow_style()
    return node


def _q(text: str) -> DoubleQuotedScalarString:
    return DoubleQuotedScalarString(text)
