"""The packages under stages/ only point down: which package may import which, checked on every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# package -> the packages its modules may import (itself included). The stage mains (stages/<stage>.py) stand
# above all of them; no package imports a stage main.
MAY_IMPORT = {
    "core": {"core"},
    "http": {"core", "http"},
    "teacher": {"core", "http", "teacher"},
    "labels": {"core", "labels"},
    "students": {"core", "labels", "students"},
    "serving": {"core", "students", "securities", "serving"},
    "securities": {"core", "securities"},
    "review": {"core", "labels", "students", "review"},
}


def stages_imports(path: Path) -> set[str]:
    """The stages.* modules a file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "stages":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "stages")
    return found


def layer_violations(stages_dir: Path, rules: dict[str, set[str]]) -> list[str]:
    """'<file>: imports <module>' for every import a package's module may not make (an unknown package, a stage
    main, or a package its rules leave out)."""
    found = []
    for package in sorted(p for p in stages_dir.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        for path in sorted(package.glob("*.py")):
            for module in sorted(stages_imports(path)):
                parts = module.split(".")
                target = parts[1] if len(parts) > 1 else ""
                if target not in rules.get(package.name, set()):
                    found.append(f"{path.relative_to(stages_dir.parent)}: imports {module}")
    return found


def test_every_package_is_under_a_rule():
    packages = {p.name for p in (ROOT / "stages").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(MAY_IMPORT)


def test_packages_import_only_downwards():
    assert layer_violations(ROOT / "stages", MAY_IMPORT) == []


def test_a_broken_rule_is_reported(tmp_path):
    """The check itself: an http module importing the teacher, and a package importing a stage main, are found."""
    stages = tmp_path / "stages"
    for package, source in {
        "core": "",
        "http": "from stages.core import io\nfrom stages.teacher.request import RequestSpec\n",
        "teacher": "def f():\n    import stages.tag\n",
    }.items():
        (stages / package).mkdir(parents=True)
        (stages / package / "__init__.py").write_text("")
        (stages / package / "mod.py").write_text(source)
    assert layer_violations(stages, MAY_IMPORT) == [
        "stages/http/mod.py: imports stages.teacher.request",
        "stages/teacher/mod.py: imports stages.tag",
    ]
