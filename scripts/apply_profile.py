"""Apply a params profile (profiles/NAME.yaml) to params.yaml: its keys replace params.yaml's, everything else
and every comment stays, and the result is validated before anything is written.

Usage: python -m scripts.apply_profile NAME [--set dotted.key=value ...] [--params params.yaml]
A profile value REQUIRED must be given with --set (values are YAML: --set llm_label.limit=1000).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import yaml
from ruamel.yaml import YAML

from stages.core import stage_params
from stages.core.params import Section, validate
from stages.students import config as student_params

ROOT = Path(__file__).resolve().parents[1]

REQUIRED = "REQUIRED"
MODELS = {
    model.SECTION: model
    for module in (stage_params, student_params)
    for model in vars(module).values()
    if isinstance(model, type) and issubclass(model, Section) and "SECTION" in vars(model)
}


def merge(target, changes: dict, prefix: str = "") -> list[str]:
    """Write `changes` into the (comment-keeping) mapping `target`, dicts key by key; returns the keys changed."""
    changed = []
    for key, value in changes.items():
        dotted = f"{prefix}{key}"
        if dotted.split(".")[0] not in MODELS:
            raise SystemExit(f"profile: {dotted}: no such params section (have {sorted(MODELS)})")
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            changed += merge(target[key], value, f"{dotted}.")
        elif target.get(key) != value:
            target[key] = value
            changed.append(dotted)
    return changed


def with_sets(profile: dict, sets: list[str]) -> dict:
    """The profile with each --set key=value written in (dotted keys, YAML values)."""
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"profile: --set {item!r}: expected dotted.key=value")
        *parents, last = key.split(".")
        node = profile
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return profile


def missing(profile: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in profile.items():
        if isinstance(value, dict):
            found += missing(value, f"{prefix}{key}.")
        elif value == REQUIRED:
            found.append(f"{prefix}{key}")
    return found


def apply(name: str, sets: list[str], params_path: Path) -> list[str]:
    profile_path = ROOT / "profiles" / f"{name}.yaml"
    if not profile_path.exists():
        raise SystemExit(
            f"profile: {profile_path} not found (have {sorted(p.stem for p in profile_path.parent.glob('*.yaml'))})"
        )
    profile = with_sets(yaml.safe_load(profile_path.read_text()), sets)
    if missing(profile):
        raise SystemExit(
            f"profile {name}: give "
            + ", ".join(f"--set {key}=..." for key in missing(profile))
            + "; params.yaml was not changed"
        )
    round_trip = YAML()
    round_trip.preserve_quotes, round_trip.width = True, 4096  # no re-wrapping of the lines a profile leaves alone
    round_trip.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    params = round_trip.load(params_path.read_text())
    changed = merge(params, profile)
    text = io.StringIO()
    round_trip.dump(params, text)
    plain = yaml.safe_load(text.getvalue())
    for section, model in MODELS.items():
        validate(model, plain.get(section), params_path)
    params_path.write_text(text.getvalue())
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    changed = apply(args.name, args.set, args.params)
    print(f"{args.params}: profile {args.name} changed {len(changed)} key(s): {', '.join(changed) or 'none'}")


if __name__ == "__main__":
    main()
