"""Read and validate one stage's section of params.yaml (the file DVC tracks with `params:`).

Each section is a pydantic model naming its SECTION (stage_params.py, student_params.py); a stage imports
only the models it reads, so an edit of one model reruns only the stages that read it. A key missing from
params.yaml is an error (params.yaml is the one place defaults live), as is an unknown key (a typo), a wrong
type, a number out of range or a value that is not one of the allowed ones. Each problem is one line naming
the full key, the value and what is allowed, and it comes before any work or any paid call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.core.errors import ParamsError

PARAMS_FILE = Path("params.yaml")


class Section(BaseModel):
    # inf / nan pass YAML's float syntax (.inf) but make no price, timeout or rate, and are not JSON in metrics
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    SECTION: ClassVar[str]  # the params.yaml section a top-level model validates


Fraction = Field(ge=0, le=1)
Model = TypeVar("Model", bound=Section)


def problems(section: str, error: ValidationError) -> list[str]:
    """One line per problem: the full key, the value given and what is allowed."""
    lines = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.append(f"{key}: missing (params.yaml must set it)")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (a typo? allowed keys are the ones in the shipped params.yaml)")
        else:
            lines.append(f"{key}: {item['input']!r} is not allowed: {message}")
    return lines


def validate(model: type[Model], raw: Any, path: Path = PARAMS_FILE) -> Model:
    """The section checked against its model: the validated model itself (core functions take it, never a dict)."""
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as error:
        raise ParamsError(f"{path}: " + f"\n{path}: ".join(problems(model.SECTION, error))) from None


def load_params(model: type[Model], path: Path = PARAMS_FILE) -> Model:
    """The section of params.yaml that `model` validates (model.SECTION), validated."""
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if model.SECTION not in params:
        raise ParamsError(f"{path}: missing section '{model.SECTION}'")
    return validate(model, params[model.SECTION], path)
