"""Lint and layering rules that a reviewer would otherwise check by hand."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "--output-format", "concise", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dec_lib_never_imports_kfp():
    offenders = []
    for path in (ROOT / "dec_lib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "kfp"]
    assert offenders == []


def test_no_plain_pickle_load_anywhere():
    offenders = []
    for folder in ("dec_lib", "components", "pipelines", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("load", "loads")
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "pickle"):
                    offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


# ------------------------------------------------------------------------------------ layers

LAYERS = ("errors", "runtime", "config", "data", "model", "reports", "core", "mlops", "steps")
"""dec_lib's layers, lowest first: a module imports dec_lib only from its own layer or lower
ones, so each layer can be used and tested without those above it."""
FOUNDATION = ("errors", "names", "version")
"""The package's top-level modules: the lowest layer, with ``errors``."""
MLFLOW_LAYERS = ("mlops", "steps")
"""The only layers that talk to MLflow: the rest of dec_lib works without a tracking server."""

KNOWN_LAYER_VIOLATIONS: set[str] = set()
"""Imports that break the order on purpose, each with its reason (none today)."""


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, anywhere in it (lazy imports in functions too), by its
    full dotted name; ``from dec_lib import names`` counts as ``dec_lib.names``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                package = path.relative_to(ROOT).parent.parts
                base = ".".join(package[:len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module in ("dec_lib", "components", "pipelines"):
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _layer(parts: tuple[str, ...] | list[str]) -> int:
    """The layer of the dec_lib module whose path (or dotted name) below dec_lib is ``parts``.

    The package's ``__init__`` is its front door (``from dec_lib import DEC``), above every
    layer; naming the package itself (``import dec_lib``) costs nothing, since it imports the
    estimator only on first use.
    """
    if tuple(parts) == ("__init__.py",):
        return len(LAYERS)
    head = parts[0].removesuffix(".py") if parts else "errors"
    return 0 if head in FOUNDATION else LAYERS.index(head)


def _dec_lib_modules() -> list[Path]:
    return sorted((ROOT / "dec_lib").rglob("*.py"))


def test_every_dec_lib_module_lies_in_a_known_layer():
    for path in _dec_lib_modules():
        _layer(path.relative_to(ROOT / "dec_lib").parts)  # raises for an unknown folder


def test_dec_lib_imports_only_from_its_own_layer_or_lower_ones():
    offenders = []
    for path in _dec_lib_modules():
        own = _layer(path.relative_to(ROOT / "dec_lib").parts)
        for _, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "dec_lib" and _layer(parts[1:]) > own:
                offenders.append(f"{path.relative_to(ROOT)} -> {name}")
    assert sorted(set(offenders) - KNOWN_LAYER_VIOLATIONS) == []
    assert set(offenders) >= KNOWN_LAYER_VIOLATIONS, "fixed: remove from the allow-list"


def test_mlflow_is_imported_only_by_the_mlops_layer_and_the_steps():
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for path in _dec_lib_modules()
                 if path.relative_to(ROOT / "dec_lib").parts[0] not in MLFLOW_LAYERS
                 for line, name in _imports(path) if name.split(".")[0] == "mlflow"]
    assert offenders == []


def test_components_import_only_the_steps_kfp_and_the_standard_library():
    allowed_tops = {*sys.stdlib_module_names, "__future__", "kfp", "components"}
    offenders = [f"{path.name}:{line}: {name}"
                 for path in sorted((ROOT / "components").rglob("*.py"))
                 for line, name in _imports(path)
                 if name.split(".")[0] not in allowed_tops
                 and name != "dec_lib.steps" and not name.startswith("dec_lib.steps.")]
    assert offenders == []


def test_neither_dec_lib_nor_the_components_import_the_pipelines():
    offenders = [f"{path.relative_to(ROOT)}:{line}"
                 for folder in ("dec_lib", "components")
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 for line, name in _imports(path) if name.split(".")[0] == "pipelines"]
    assert offenders == []


def test_the_components_are_the_steps_named_in_dec_lib_names():
    from components import __all__ as components
    from dec_lib import names

    assert sorted(components) == sorted(names.STEPS + names.MEMBER_STEPS)


# -------------------------------------------------------------------------------- docstrings

KNOWN_MISSING_DOCSTRINGS: dict[str, set[str]] = {}
"""Public names allowed without a docstring, by module (none)."""
KNOWN_OTHER_STYLES: dict[str, set[str]] = {}
"""Docstrings allowed in another style than numpydoc, by module (none)."""

_GOOGLE_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Yields|Raises|Attributes|Examples?|Notes?):\s*$",
    re.MULTILINE)
_SPHINX_FIELD = re.compile(r"^\s*:(param|type|returns?|rtype|raises?|yields?)\b", re.MULTILINE)
_NUMPYDOC_SECTIONS = ("Parameters", "Returns", "Yields", "Receives", "Other Parameters",
                      "Raises", "Warns", "Warnings", "See Also", "Notes", "References",
                      "Examples", "Attributes", "Methods")


def _public_definitions(path: Path):
    """Public functions and classes of ``path``, and the public methods of its public classes,
    with their names as ``Class.method``."""
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and not node.name.startswith("_")):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if (isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef)
                            and not member.name.startswith("_")):
                        yield f"{node.name}.{member.name}", member


def _numpydoc_problems(doc: str) -> list[str]:
    problems = []
    if _GOOGLE_SECTION.search(doc):
        problems.append("Google-style section (a header with a colon)")
    if _SPHINX_FIELD.search(doc):
        problems.append("Sphinx field (:param ...)")
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() in _NUMPYDOC_SECTIONS and i + 1 < len(lines):
            underline = lines[i + 1].strip()
            if set(underline) == {"-"} and len(underline) != len(line.strip()):
                problems.append(f"section {line.strip()!r}: underline of another length")
    return problems


def test_every_public_function_and_class_in_dec_lib_has_a_docstring():
    missing: dict[str, set[str]] = {}
    for path in _dec_lib_modules():
        for name, node in _public_definitions(path):
            if not ast.get_docstring(node):
                missing.setdefault(str(path.relative_to(ROOT)), set()).add(name)
    assert missing == KNOWN_MISSING_DOCSTRINGS


def test_docstrings_use_the_numpydoc_style():
    offenders: dict[str, set[str]] = {}
    for path in _dec_lib_modules():
        documented = [(name, ast.get_docstring(node) or "")
                      for name, node in _public_definitions(path)]
        module = ast.get_docstring(ast.parse(path.read_text())) or ""
        for name, doc in [("<module>", module), *documented]:
            if _numpydoc_problems(doc):
                offenders.setdefault(str(path.relative_to(ROOT)), set()).add(name)
    assert offenders == KNOWN_OTHER_STYLES
