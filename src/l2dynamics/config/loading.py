"""Config files and ``--set key=value`` overrides, read as plain data (never evaluated)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from l2dynamics.errors import ConfigError


class _DataLoader(yaml.SafeLoader):
    """YAML as plain data: the safe loader (no ``!!python/...`` tags, nothing is called) that
    also refuses a key given twice in one mapping instead of keeping the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" then overriding keys is YAML's own idiom
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # unhashable: the safe loader reports it
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicate = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if duplicate is not None:
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def load_config_file(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """Read a YAML or JSON config file as data (never evaluated; see `_DataLoader`)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a YAML or JSON file")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text()
        data = (json.loads(text, object_pairs_hook=_unique_pairs) if path.suffix == ".json"
                else yaml.load(text, Loader=_DataLoader))  # a SafeLoader subclass
    except (yaml.YAMLError, ValueError) as err:  # ValueError: JSON, UTF-8, duplicate keys
        raise ConfigError(f"{what} {path} is not valid YAML/JSON: {_one_line(err)}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} {path} must hold a mapping of keys to values")
    return dict(data)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (values as YAML scalars/lists); ``a.b=v`` sets nested keys."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        target = out
        *parents, leaf = key.split(".")
        for parent in parents:
            existing = target.setdefault(parent, {})
            if not isinstance(existing, dict):
                raise ConfigError(f"override {item!r} conflicts with {f'{parent}={existing}'!r}")
            target = existing
        target[leaf] = value
    return out


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
