"""Lint and layering rules that a reviewer would otherwise check by hand."""

import ast
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
