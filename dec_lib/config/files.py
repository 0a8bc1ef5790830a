"""Configuration files: YAML or TOML in the shape of ``RunConfig.to_dict()``, and back.

A file sits between a preset and ``--set``: preset < file < overrides. A team keeps a reviewed
configuration in version control and still tries one change on the command line. Files are
checked strictly (types as written, no guessing from text) and every error names the file.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import math
import re
import textwrap
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dec_lib.config import sections as config_module
from dec_lib.config.sections import PRESETS, RunConfig, flatten, preset
from dec_lib.errors import ConfigError, DataError, short_repr, short_text

__all__ = ["config_from_file", "dump_config", "field_docs", "format_config", "load_config_file"]

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
PRESET_KEY = "preset"
_NONE_WORDS = {"none", "null"}  # TOML has no null; Optional settings accept these words
_TOP_DOCS = {"seed": "Random seed for every step (subset, initialisation, training)."}


def _format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataError(path, "unsupported configuration file type; use .yaml, .yml or "
                        ".toml") from None


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(RunConfig)
    return {name: hints[name] for name in RunConfig.SECTIONS}


# ------------------------------------------------------------------------------------ reading

MAX_CONFIG_BYTES = 256 * 1024
"""A complete, documented configuration is about 6 KB; anything far larger is not one."""
MAX_DEPTH = 16
"""Sections hold settings, some of them lists: four levels are used, sixteen allowed."""
MAX_ALIASES = 100
MAX_NODES = 10_000
"""Values a YAML file may hold once its aliases are expanded: a "billion laughs" file of a few
hundred bytes expands to a billion, and every later pass over it (types, messages) pays that."""


def _read_text(path: Path) -> str:
    """The file's text, read only if it is a regular file of at most ``MAX_CONFIG_BYTES``.

    A FIFO or a device would block or never end; the size is checked on what is read, not on
    what ``stat`` says, so a file that grows while read is still bounded.
    """
    from dec_lib.data.datasets import check_source_path

    check_source_path(path, what="configuration file", directory_ok=False)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise DataError(path, f"cannot read the configuration file: "
                        f"{error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise DataError(path, f"larger than {MAX_CONFIG_BYTES // 1024} KiB; not a "
                        "configuration file (write one with 'config show --format yaml')")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text (byte {error.start})") from None


def _parse(path: Path) -> Any:
    fmt = _format_of(path)
    text = _read_text(path)
    try:
        value = _load_yaml(path, text) if fmt == "yaml" else tomllib.loads(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise DataError(path, f"not valid YAML: {where}{short_text(problem)}") from None
    except tomllib.TOMLDecodeError as error:  # its message ends "(at line L, column C)"
        raise DataError(path, f"not valid TOML: {short_text(str(error))}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise DataError(path, f"nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(path, value)
    return value


def _load_yaml(path: Path, text: str) -> Any:
    """``yaml.safe_load`` with bounds: depth and aliases counted on the event stream (which
    PyYAML parses without recursion) before the composer recurses, expansion and duplicate keys
    checked on the node graph before anything is constructed."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise DataError(path, f"nested deeper than {MAX_DEPTH} levels (line {line})")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise DataError(path, f"more than {MAX_ALIASES} YAML aliases (*name); "
                                "a configuration needs few or none")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(path, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_nodes(path: Path, root: yaml.Node) -> None:
    """Refuse duplicate keys, self-referencing aliases and more than ``MAX_NODES`` values once
    aliases are expanded (counted per distinct node, so the count itself stays cheap)."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in visiting:
            raise DataError(path, "a YAML alias refers to itself "
                            f"(line {node.start_mark.line + 1})")
        visiting.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise DataError(path, f"key {short_repr(key.value)} is written twice "
                                        f"(line {key.start_mark.line + 1}); keep one")
                    seen.add(key.value)
                total += size(key) + size(value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        visiting.discard(id(node))
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise DataError(path, f"expands to more than {MAX_NODES:,} values (YAML aliases); "
                            "refused as an alias bomb")
        return total

    size(root)


def _check_depth(path: Path, value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DataError(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _nest(path: Path, raw: Mapping[Any, Any]) -> dict[str, Any]:
    """Merge ``section: {key: v}`` and dotted ``section.key: v`` into one nested dict."""
    nested: dict[str, Any] = {}
    known = ", ".join(["seed", PRESET_KEY, *RunConfig.SECTIONS])

    def put(section: str, key: Any, value: Any) -> None:
        if not isinstance(key, str):
            raise ConfigError(f"{section}.{short_repr(key)}", f"keys must be text (in {path})")
        group = nested.setdefault(section, {})
        if key in group:
            raise ConfigError(f"{section}.{key}", f"set twice (in {path})")
        group[key] = value

    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(short_repr(key), f"keys must be text (in {path})")
        section, dot, name = key.partition(".")
        if section not in RunConfig.SECTIONS:
            if dot or key not in ("seed", PRESET_KEY):
                raise ConfigError(key, f"unknown section or key (in {path}); known: {known}")
            nested[key] = value
        elif dot:
            put(section, name, value)
        elif isinstance(value, Mapping) or value is None:  # None: every key commented out
            for inner, inner_value in (value or {}).items():
                put(section, inner, inner_value)
        else:
            raise ConfigError(section, f"expected a mapping of settings, got {short_repr(value)} "
                              f"(in {path})")
    return nested


def _typed(key: str, value: Any, hint: Any, path: Path) -> Any:
    """``value`` as parsed, checked against the field's type; integral floats become ints."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in _NONE_WORDS):
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(key, value, inner, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {short_repr(value)} (in {path})")
        (item,) = typing.get_args(hint)
        return [_typed(key, v, item, path) for v in value]
    ok = {
        bool: isinstance(value, bool),
        int: (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer()),
        float: isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(value),
        str: isinstance(value, str),
    }.get(hint)
    if ok is None:
        raise ConfigError(key, f"unsupported type {hint!r}")
    if not ok:
        wanted = {bool: "true or false", int: "an integer", float: "a finite number",
                  str: "text"}[hint]
        hint_text = " (quote it: YAML reads yes/no/on/off as true/false)" if (
            hint is str and isinstance(value, bool)) else ""
        raise ConfigError(key, f"expected {wanted}, got {short_repr(value)}{hint_text} "
                          f"(in {path})")
    return int(value) if hint is int else value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML or TOML file as a nested dict shaped like ``RunConfig.to_dict()``.

    Only the settings the file names are returned (plus ``preset`` when given); dotted keys
    (``pretrain.epochs: 50``) are nested. Raises ``DataError`` for a file that is missing or not
    YAML/TOML, ``ConfigError`` for an unknown key or a wrong type; both name the file.
    """
    path = Path(path)
    raw = _parse(path)
    if raw is None:  # an empty YAML file: nothing to change
        raw = {}
    if not isinstance(raw, Mapping):
        raise DataError(path, "the top level must be a mapping of sections (seed, preset, "
                        f"{', '.join(RunConfig.SECTIONS)}), got {type(raw).__name__}")
    nested = _nest(path, raw)
    sections = _sections()
    result: dict[str, Any] = {}
    for key, value in nested.items():
        if key == PRESET_KEY:
            if not isinstance(value, str) or value not in PRESETS:
                raise ConfigError(PRESET_KEY, f"unknown preset {short_repr(value)} (in {path}); "
                                  "known: " + ", ".join(PRESETS))
            result[key] = value
        elif key == "seed":
            result[key] = _typed(key, value, int, path)
        else:
            hints = typing.get_type_hints(sections[key])
            fields = [f.name for f in dataclasses.fields(sections[key])]
            result[key] = {}
            for name, setting in value.items():
                if name not in fields:
                    raise ConfigError(f"{key}.{name}", f"unknown key (in {path}); known keys "
                                      f"of {key}: " + ", ".join(fields))
                result[key][name] = _typed(f"{key}.{name}", setting, hints[name], path)
    return result


def config_from_file(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (),
                     base_preset: str | None = None) -> RunConfig:
    """The preset, then the file's settings, then ``overrides``: later wins.

    The preset is the file's ``preset`` key, else ``base_preset`` (a ``--preset`` the user gave),
    else ``default``; the two naming different presets is refused rather than silently resolved.
    ``overrides`` are ``--set``-style ``KEY=VALUE`` strings (or a dict of dotted keys), applied
    by ``RunConfig.with_overrides``, so they are typed exactly as on the command line.
    """
    values = load_config_file(path)
    named = values.pop(PRESET_KEY, None)
    if named and base_preset and named != base_preset:
        raise ConfigError(PRESET_KEY, f"{path} starts from preset {named!r} but {base_preset!r} "
                          "was asked for; drop one of them")
    config = preset(named or base_preset or "default")
    try:
        config = config.with_overrides(flatten(values))
    except ConfigError as error:  # an impossible combination, e.g. more clusters than images
        raise ConfigError(error.key, f"{error.problem} (in {path})") from None
    if overrides:
        config = config.with_overrides(
            dict(overrides) if isinstance(overrides, Mapping) else list(overrides))
    return config


# ------------------------------------------------------------------------------------ writing

@functools.cache
def field_docs() -> dict[str, str]:
    """Dotted key -> the docstring under that field in ``dec_lib/config/sections.py`` (one line)."""
    try:
        tree = ast.parse(inspect.getsource(config_module))
    except (OSError, TypeError):  # no source shipped: write the file without comments
        return dict(_TOP_DOCS)
    section_of = {cls.__name__: name for name, cls in _sections().items()}
    docs = dict(_TOP_DOCS)
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name not in section_of:
            continue
        for field_node, doc_node in zip(node.body, node.body[1:], strict=False):
            if (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)
                    and isinstance(doc_node, ast.Expr) and isinstance(doc_node.value, ast.Constant)
                    and isinstance(doc_node.value.value, str)):
                text = " ".join(doc_node.value.value.split()).replace("``", "")
                docs[f"{section_of[node.name]}.{field_node.target.id}"] = text
    return docs


def _comment(key: str, indent: str) -> list[str]:
    doc = field_docs().get(key)
    if not doc:
        return []
    return [f"{indent}# {line}" for line in textwrap.wrap(doc, 96 - len(indent))]


def _yaml_value(value: Any) -> str:
    """One value as single-line YAML (JSON quoting for text that YAML would fold)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n...\n")
    text = text.strip()
    return json.dumps(value) if "\n" in text else text


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _bare(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def format_config(config: RunConfig, fmt: str = "yaml") -> str:
    """Every setting of ``config`` as YAML or TOML text, each preceded by its documentation."""
    if fmt not in ("yaml", "toml"):
        raise ValueError(f"fmt must be 'yaml' or 'toml', got {fmt!r}")
    values = config.to_dict()
    lines = ["# dec-pipeline configuration: every setting, documented. Delete the ones you keep",
             "# at their defaults; `--set KEY=VALUE` on the command line wins over this file.",
             ""]
    top = [k for k, v in values.items() if not isinstance(v, dict)]
    for key in top:  # TOML needs top-level keys before the first table
        lines += _comment(key, "")
        lines.append(f"{key}: {_yaml_value(values[key])}" if fmt == "yaml"
                     else f"{_bare(key)} = {_toml_value(values[key])}")
    for section in (k for k, v in values.items() if isinstance(v, dict)):
        lines += ["", f"{section}:" if fmt == "yaml" else f"[{section}]"]
        indent = "  " if fmt == "yaml" else ""
        for name, value in values[section].items():
            lines += _comment(f"{section}.{name}", indent)
            lines.append(f"{indent}{name}: {_yaml_value(value)}" if fmt == "yaml"
                         else f"{_bare(name)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def dump_config(config: RunConfig, path: str | Path) -> Path:
    """Write ``config`` to ``path`` (.yaml, .yml or .toml); loading it gives ``config`` back."""
    path = Path(path)
    text = format_config(config, _format_of(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
