"""Configuration files: YAML or TOML in the shape of ``RunConfig.to_dict()``, and back.

A file sits between a preset and ``--set``: preset < file < overrides. A team keeps a reviewed
configuration in version control and still tries one change on the command line. Files are
checked strictly (types as written, no guessing from text) and every error names the file.
"""

from __future__ import annotations

import json
import re
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dec_lib.config.convert import convert
from dec_lib.config.presets import PRESETS, preset_settings
from dec_lib.config.sections import (
    RunConfig,
    declared_settings,
    flatten,
    nest,
    typed_assignments,
)
from dec_lib.errors import ConfigError, DataError, short_repr, short_text
from dec_lib.runtime.paths import check_source_path

__all__ = ["config_from_file", "dump_config", "field_docs", "format_config", "load_config_file"]

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
"""File suffixes read and written, and their formats."""
PRESET_KEY = "preset"
"""The top-level key naming the preset a file starts from."""


def _format_of(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataError(path, "unsupported configuration file type; use .yaml, .yml or "
                        ".toml") from None


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
    top = [item.key for item in declared_settings() if item.section is None]  # seed, members
    known = ", ".join([*top, PRESET_KEY, *RunConfig.SECTIONS])

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
            if dot or key not in (*top, PRESET_KEY):
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


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML or TOML file as a nested dict shaped like ``RunConfig.to_dict()``.

    Only the settings the file names are returned (plus ``preset`` when given), each converted
    to its declared type as written (``epochs: "50"`` is refused, not read as text); dotted keys
    (``pretrain.epochs: 50``) are nested.

    Parameters
    ----------
    path : str or Path
        A ``.yaml``, ``.yml`` or ``.toml`` file.

    Returns
    -------
    dict
        Sections to their settings, ``seed`` and ``preset`` at the top.

    Raises
    ------
    DataError
        For a file that is missing, not a regular file, too large, too deep or not YAML/TOML.
    ConfigError
        For an unknown key, a key set twice or a value of the wrong type. Both name the file.
    """
    path = Path(path)
    raw = _parse(path)
    if raw is None:  # an empty YAML file: nothing to change
        raw = {}
    if not isinstance(raw, Mapping):
        raise DataError(path, "the top level must be a mapping of sections (seed, members, "
                        f"preset, {', '.join(RunConfig.SECTIONS)}), got {type(raw).__name__}")
    hints = {item.key: item.hint for item in declared_settings()}
    result: dict[str, Any] = {}
    for key, value in _nest(path, raw).items():
        if key == PRESET_KEY:
            if not isinstance(value, str) or value not in PRESETS:
                raise ConfigError(PRESET_KEY, f"unknown preset {short_repr(value)} (in {path}); "
                                  "known: " + ", ".join(PRESETS))
            result[key] = value
        elif key in RunConfig.SECTIONS:
            result[key] = {}
            for name, setting in value.items():
                dotted = f"{key}.{name}"
                if dotted not in hints:
                    known = [item.name for item in declared_settings() if item.section == key]
                    raise ConfigError(dotted, f"unknown key (in {path}); known keys of {key}: "
                                      + ", ".join(known))
                result[key][name] = _converted(path, dotted, setting, hints[dotted])
        else:
            result[key] = _converted(path, key, value, hints[key])
    return result


def _converted(path: Path, key: str, value: Any, hint: Any) -> Any:
    try:
        return convert(key, value, hint)
    except ConfigError as error:
        raise ConfigError(error.key, f"{error.problem} (in {path})") from None


def config_from_file(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (),
                     base_preset: str | None = None) -> RunConfig:
    """The preset, then the file's settings, then ``overrides``: later wins.

    The three are merged and the configuration is built (and validated) once.

    Parameters
    ----------
    path : str or Path
        The configuration file.
    overrides : sequence of str or mapping, optional
        ``--set``-style ``KEY=VALUE`` text, or dotted keys to parsed values, typed exactly as
        ``RunConfig.with_overrides`` types them.
    base_preset : str, optional
        A ``--preset`` the user gave. The preset is the file's ``preset`` key, else this, else
        ``default``; the two naming different presets is refused rather than silently resolved.

    Returns
    -------
    RunConfig

    Raises
    ------
    DataError, ConfigError
        As ``load_config_file``; a setting made impossible by the file (say more clusters than
        images) names the file, one made impossible by ``overrides`` does not.
    """
    values = load_config_file(path)
    named = values.pop(PRESET_KEY, None)
    if named and base_preset and named != base_preset:
        raise ConfigError(PRESET_KEY, f"{path} starts from preset {named!r} but {base_preset!r} "
                          "was asked for; drop one of them")
    starting = preset_settings(named or base_preset or "default")
    overridden = typed_assignments(overrides if isinstance(overrides, Mapping)
                                   else list(overrides))
    try:
        return RunConfig.from_dict(nest({**starting, **flatten(values), **overridden}))
    except ConfigError as error:
        if any(error.key == key or f"{key}=" in error.problem for key in overridden):
            raise
        raise ConfigError(error.key, f"{error.problem} (in {path})") from None


# ------------------------------------------------------------------------------------ writing

def field_docs() -> dict[str, str]:
    """Dotted key -> the setting's declared doc and allowed values, as plain text for comments.

    Returns
    -------
    dict
        ``"init.method"`` to ``"kmeans on the embedding (published), ... Allowed: 'kmeans' or
        'umap'."``, for every declared setting.
    """
    return {item.key: f"{item.doc.replace('`', '')} Allowed: {item.allowed()}."
            for item in declared_settings()}


def _comment(doc: str, indent: str) -> list[str]:
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
    """Every setting of ``config`` as YAML or TOML text, each preceded by its documentation.

    Parameters
    ----------
    config : RunConfig
        The configuration to write.
    fmt : {"yaml", "toml"}, default="yaml"
        The format. TOML has no null: a setting that is none is written ``"none"``.

    Returns
    -------
    str
        The text, every line at most 100 characters; ``load_config_file`` reads it back to
        ``config``.
    """
    if fmt not in ("yaml", "toml"):
        raise ValueError(f"fmt must be 'yaml' or 'toml', got {fmt!r}")
    values = config.to_dict()
    docs = field_docs()
    lines = ["# dec-pipeline configuration: every setting, documented. Delete the ones you keep",
             "# at their defaults; `--set KEY=VALUE` on the command line wins over this file.",
             ""]
    top = [k for k, v in values.items() if not isinstance(v, dict)]
    for key in top:  # TOML needs top-level keys before the first table
        lines += _comment(docs[key], "")
        lines.append(f"{key}: {_yaml_value(values[key])}" if fmt == "yaml"
                     else f"{_bare(key)} = {_toml_value(values[key])}")
    for section in (k for k, v in values.items() if isinstance(v, dict)):
        lines += ["", f"{section}:" if fmt == "yaml" else f"[{section}]"]
        indent = "  " if fmt == "yaml" else ""
        for name, value in values[section].items():
            lines += _comment(docs[f"{section}.{name}"], indent)
            lines.append(f"{indent}{name}: {_yaml_value(value)}" if fmt == "yaml"
                         else f"{_bare(name)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def dump_config(config: RunConfig, path: str | Path) -> Path:
    """Write ``config`` to ``path`` (.yaml, .yml or .toml); loading it gives ``config`` back.

    Parameters
    ----------
    config : RunConfig
        The configuration to write.
    path : str or Path
        The file; its suffix chooses the format, and missing folders are made.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    DataError
        For a suffix that is not .yaml, .yml or .toml.
    """
    path = Path(path)
    text = format_config(config, _format_of(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
