"""Read one stage's section of params.yaml (the file DVC tracks with `params:`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


def load_params(section: str, path: Path = PARAMS_FILE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if section not in params:
        raise SystemExit(f"{path}: missing section '{section}'")
    return params[section]


def require(params: dict[str, Any], key: str, section: str) -> Any:
    """A dotted key of a params section, with an error that names where it should be."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"params.yaml: missing '{section}.{key}'")
        value = value[part]
    return value
