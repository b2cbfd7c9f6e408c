"""dvc.yaml and the code agree: each stage declares exactly the shared modules its code imports, and no
stage imports another stage (all stages stand side by side above stages/common)."""

import ast
from pathlib import Path

import pytest
import yaml

from stages.core import stage_params
from stages.students import config as student_params
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if (ROOT / node.module.replace(".", "/") / f"{alias.name}.py").exists()
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("stages"))
    return {m for m in found if (ROOT / (m.replace(".", "/") + ".py")).exists()}


def shared_closure(module: str) -> set[str]:
    """Every stages.common module reachable from a module's imports."""
    seen, todo = set(), [module]
    while todo:
        for found in imported_modules(ROOT / (todo.pop().replace(".", "/") + ".py")) - seen:
            if found.startswith("stages.common."):
                seen.add(found)
                todo.append(found)
    return seen


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_declared_shared_deps_are_exactly_what_the_code_imports(stage):
    declared = {
        d.removesuffix(".py").replace("/", ".")
        for d in DVC["stages"][stage]["deps"]
        if isinstance(d, str) and d.startswith("stages/common/") and d.endswith(".py")
    }
    assert f"stages/{stage}.py" in DVC["stages"][stage]["deps"]
    assert declared == shared_closure(f"stages.{stage}"), "dvc.yaml deps of this stage and its imports differ"


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_no_stage_imports_another_stage(stage):
    others = {m for m in imported_modules(ROOT / f"stages/{stage}.py") if not m.startswith("stages.common")}
    assert others == set()


OWN_SECTION = {"argilla_sync": "argilla_review"}  # a stage's own params section, where it is not named after it


def sections_loaded(module: str) -> set[str]:
    """params.yaml sections a stage module reads with load_params(SomeParams)."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    models = {**vars(stage_params), **vars(student_params)}
    return {
        models[node.args[0].id].SECTION
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "load_params"
        and node.args
        and isinstance(node.args[0], ast.Name)
    }


@pytest.mark.parametrize("stage", sorted(DVC["stages"]))
def test_a_section_borrowed_from_another_stage_is_declared_key_by_key(stage):
    """Declaring another stage's whole section would rerun this stage whenever any key of it changes."""
    own = OWN_SECTION.get(stage, stage)
    declared = DVC["stages"][stage].get("params", [])
    borrowed = sections_loaded(f"stages.{stage}") - {own}
    assert not [key for key in declared if key in borrowed], "borrowed sections must be listed by dotted keys"
    assert borrowed <= {key.split(".")[0] for key in declared}, "every section the stage reads must be declared"
