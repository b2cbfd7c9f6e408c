"""dvc.yaml and the code agree: each stage declares exactly the package modules its code imports (so an edit
reruns exactly the stages that use it), and no stage imports another stage."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from scripts.apply_profile import MODELS

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = {name: stage.get("do", stage) for name, stage in DVC["stages"].items()}  # a foreach stage: its `do`


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


@cache
def imported_modules(path: Path) -> frozenset[str]:
    """The modules of this repository (stages.*) a file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("stages"))
    return frozenset(module for module in found if module_path(module).exists())


def package_closure(module: str) -> set[str]:
    """Every package module (stages.<package>.<module>) reachable from a module's imports."""
    seen, todo = set(), [module]
    while todo:
        for found in imported_modules(module_path(todo.pop())) - seen:
            if found.count(".") == 2:
                seen.add(found)
                todo.append(found)
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_declared_module_deps_are_exactly_what_the_code_imports(stage):
    deps = [d for d in STAGES[stage]["deps"] if isinstance(d, str)]
    assert f"stages/{stage}.py" in deps
    declared = {d.removesuffix(".py").replace("/", ".") for d in deps if d.startswith("stages/") and d.count("/") == 2}
    assert declared == package_closure(f"stages.{stage}"), "dvc.yaml deps of this stage and its imports differ"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_imports_another_stage(stage):
    others = {m for m in imported_modules(ROOT / f"stages/{stage}.py") if m.count(".") == 1}
    assert others == set()


def test_editing_a_package_module_reruns_only_the_stages_that_use_it():
    """The reruns the layout exists for: the handler and the card rebuild the servable folder and retrain
    nothing; the teacher's candidate rules relabel, and tag (which re-tags the whole feed) does not use them."""
    users = {
        module: {stage for stage in STAGES if module in package_closure(f"stages.{stage}")}
        for module in ("stages.serving.handler", "stages.students.card", "stages.teacher.candidates")
    }
    assert users["stages.serving.handler"] == {"export"}
    assert users["stages.students.card"] == {"export"}
    assert users["stages.teacher.candidates"] == {"llm_label"}


OWN_SECTION = {
    "argilla_pull": "argilla_review",
    "argilla_push": "argilla_review",
}  # a stage's own params section, where it is not named after it


def sections_loaded(module: str) -> set[str]:
    """params.yaml sections a stage module reads with load_params(SomeParams)."""
    tree = ast.parse(module_path(module).read_text())
    models = {model.__name__: model for model in MODELS.values()}
    return {
        models[node.args[0].id].SECTION
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "load_params"
        and node.args
        and isinstance(node.args[0], ast.Name)
    }


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_section_borrowed_from_another_stage_is_declared_key_by_key(stage):
    """Declaring another stage's whole section would rerun this stage whenever any key of it changes."""
    own = OWN_SECTION.get(stage, stage)
    declared = STAGES[stage].get("params", [])
    borrowed = sections_loaded(f"stages.{stage}") - {own}
    assert not [key for key in declared if key in borrowed], "borrowed sections must be listed by dotted keys"
    assert borrowed <= {key.split(".")[0] for key in declared}, "every section the stage reads must be declared"
