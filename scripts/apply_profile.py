"""Apply a params profile (profiles/NAME.yaml) to params.yaml: its keys replace params.yaml's, everything else
and every comment stays, and the result is validated before anything is written.

Usage: python -m scripts.apply_profile NAME [--set dotted.key=value ...] [--params params.yaml] [--inverse FILE]
A profile value REQUIRED must be given with --set (values are YAML: --set llm_label.limit=1000). NAME may also be
the path of a profile file. --inverse FILE writes the profile that undoes this one: params.yaml's values of every
key it changes, as written there, so applying FILE afterwards gives params.yaml back byte for byte.

params.yaml is edited as text: only the characters of each changed value are replaced (by the value as the
profile writes it), so comments, their columns, quoting, number forms and blank lines elsewhere never move.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import CollectionNode, MappingNode, Node

from stages.core import stage_params
from stages.core.params import Section, validate
from stages.securities import settings as link_params
from stages.students import config as student_params

ROOT = Path(__file__).resolve().parents[1]

REQUIRED = "REQUIRED"
# Every params.yaml section's model (the tests check the shipped params against these)
MODELS = {
    model.SECTION: model
    for module in (stage_params, student_params, link_params)
    for model in vars(module).values()
    if isinstance(model, type) and issubclass(model, Section) and "SECTION" in vars(model)
}


@dataclass(frozen=True)
class Splice:
    """One changed value: params.yaml's characters [start, end) become `text`; `old` is what they were."""

    key: str
    start: int
    end: int
    text: str
    old: str


def same(a, b) -> bool:
    """Equal and of the same type (True == 1 == 1.0 in Python, not in params.yaml)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def flow(value) -> str:
    """A value as one line of flow YAML."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).removesuffix("\n...\n").strip()


def written(node: Node | None, text: str, value) -> str:
    """The value as the file writes it (one line of it, still meaning `value`), else as one line of flow YAML."""
    if node is not None:
        source = text[node.start_mark.index : node.end_mark.index]
        if "\n" not in source and same(yaml.safe_load(source), value):
            return source
    return flow(value)


def end_of(node: Node) -> int:
    """Where a node's own characters end (a block collection's end mark lies past the comments after it)."""
    if isinstance(node, CollectionNode) and not node.flow_style and node.value:
        last = node.value[-1]
        return end_of(last[1] if isinstance(node, MappingNode) else last)
    return node.end_mark.index


def splices(
    target: MappingNode,
    current: dict,
    changes: dict,
    source: MappingNode | None,
    text: str,
    profile_text: str,
    prefix="",
) -> list[Splice]:
    """The splices that write `changes` (a profile's mapping, `source` its nodes) into `target` (params.yaml's
    nodes, `current` their values); dicts key by key."""
    nodes = {key.value: (key, value) for key, value in target.value}
    sources = {key.value: value for key, value in source.value} if source is not None else {}
    found = []
    for key, value in changes.items():
        dotted = f"{prefix}{key}"
        if dotted.split(".")[0] not in MODELS:
            raise SystemExit(f"profile: {dotted}: no such params section (have {sorted(MODELS)})")
        if key not in nodes:
            raise SystemExit(
                f"profile: {dotted}: params.yaml has no such key; a profile changes only keys params.yaml sets "
                f"(so that its inverse gives the file back), add it to params.yaml first"
            )
        key_node, node = nodes[key]
        given = sources.get(key)
        if isinstance(value, dict) and isinstance(current[key], dict):
            inner = given if isinstance(given, MappingNode) else None
            found += splices(node, current[key], value, inner, text, profile_text, f"{dotted}.")
        elif not same(current[key], value):
            new = written(given, profile_text, value)
            if isinstance(node, CollectionNode) and not node.flow_style:  # a block list or mapping: one line now
                start, new = key_node.end_mark.index, f": {new}"
            else:
                start = node.start_mark.index
            found.append(Splice(dotted, start, end_of(node), new, written(node, text, current[key])))
    return found


def merged(current: dict, changes: dict) -> dict:
    """What params.yaml must read as after the profile (checks the splices)."""
    result = dict(current)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(current.get(key), dict)
        result[key] = merged(current[key], value) if both else value
    return result


def inverse_profile(name: str, found: list[Splice]) -> str:
    """The profile that undoes these splices: each changed key with its value as params.yaml wrote it."""
    tree: dict = {}
    for splice in found:
        *parents, last = splice.key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = splice.old

    def lines(node: dict, indent: str) -> list[str]:
        out = []
        for key, value in node.items():
            if isinstance(value, dict):
                out += [f"{indent}{key}:", *lines(value, indent + "  ")]
            else:
                out.append(f"{indent}{key}: {value}")
        return out

    header = f"# Undoes profile {name}: python -m scripts.apply_profile <this file> gives params.yaml back."
    return "\n".join([header, *lines(tree, "")]) + "\n"


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


def profile_file(name: str) -> Path:
    """profiles/NAME.yaml, or NAME itself when it is a profile file's path (an inverse, say)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name)
    path = ROOT / "profiles" / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"profile: {path} not found (have {sorted(p.stem for p in path.parent.glob('*.yaml'))})")
    return path


def apply(name: str, sets: list[str], params_path: Path, inverse: Path | None = None) -> list[str]:
    profile_text = profile_file(name).read_text(encoding="utf-8")
    profile = with_sets(yaml.safe_load(profile_text) or {}, sets)
    if missing(profile):
        raise SystemExit(
            f"profile {name}: give "
            + ", ".join(f"--set {key}=..." for key in missing(profile))
            + "; params.yaml was not changed"
        )
    text = params_path.read_text(encoding="utf-8")
    current = yaml.safe_load(text)
    found = splices(yaml.compose(text), current, profile, yaml.compose(profile_text), text, profile_text)
    new_text = text
    for splice in sorted(found, key=lambda s: s.start, reverse=True):
        new_text = new_text[: splice.start] + splice.text + new_text[splice.end :]
    plain = yaml.safe_load(new_text)
    if not same(plain, merged(current, profile)):  # a splice that missed its value: write nothing
        raise SystemExit(f"profile {name}: could not edit {params_path} in place; params.yaml was not changed")
    for section, model in MODELS.items():
        validate(model, plain.get(section), params_path)
    if inverse is not None:
        inverse.write_text(inverse_profile(name, found), encoding="utf-8")
    params_path.write_text(new_text, encoding="utf-8")
    return [splice.key for splice in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--inverse", type=Path, metavar="FILE", help="also write the profile that undoes this one")
    args = parser.parse_args()
    changed = apply(args.name, args.set, args.params, args.inverse)
    print(f"{args.params}: profile {args.name} changed {len(changed)} key(s): {', '.join(changed) or 'none'}")


if __name__ == "__main__":
    main()
