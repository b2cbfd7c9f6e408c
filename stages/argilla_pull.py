"""argilla_pull: what reviewers submitted in Argilla, as a file DVC tracks (with a server: on every `dvc repro`).

With `argilla_review.server: argilla` it pulls every submitted or discarded response from the sample's datasets
(stages/review/argilla_api.py; argilla_push fills them) into data/review/argilla_submissions.jsonl, sorted, without
timestamps: one row per headline id, whichever split's dataset the review was made in (a review belongs to the
headline; each response keeps its `split` as information). The file is the stage's previous snapshot too (a
persistent DVC output): a submission it holds that the server no longer does (a fresh server, another prefix or
workspace, or `server: none`) is kept and logged, unless `argilla_review.keep_missing_submissions` is false.
The file's hash changes only when reviewers' submissions change, so a `dvc repro` with nothing new reruns
nothing after this cheap check; when it does change, the scout learns from it, argilla_review recalibrates and
auto-accepts, and argilla_push sends the next batch: one round of review.

DVC can only know the server has something new by asking it on every `dvc repro`, which dvc.yaml says with
`always_changed: true` on this stage; that cannot come from params.yaml (DVC takes a literal there). So dvc.yaml
ships `always_changed: false`, for `server: none`, where the stage does nothing but keep the snapshot and runs only
when its inputs change; with `server: argilla` and no `always_changed: true` the stage stops and says so, rather
than pull once and then miss every later submission. An empty snapshot is written as one blank line (readers skip
it): DVC warns of an empty output four times a run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from stages.core.cli import run_stage, stage_args
from stages.core.errors import ParamsError
from stages.core.io import log, read_jsonl, read_table, write_jsonl
from stages.core.legacy import split_of_snapshot_row
from stages.core.params import load_params
from stages.core.schema import SPLITS
from stages.core.stage_params import ReviewParams
from stages.review.argilla_api import ArgillaServer

STAGE = "argilla_pull"


def snapshot_rows(responses: dict[str, dict[str, list[dict]]], split_of: dict[str, str]) -> list[dict]:
    """One row per headline id someone submitted or discarded in any split's dataset ({split: {id: responses}});
    drafts are work in progress and do not count. A reviewer who answered a headline in two datasets (it
    moved split) counts once: the answer in the dataset of its current split (`split_of`), else in the
    first split's."""
    order = {name: number for number, name in enumerate(SPLITS)}
    chosen: dict[str, dict[str, dict]] = {}  # id -> user -> response
    for split, by_id in sorted(responses.items(), key=lambda item: order[item[0]]):
        for record_id, found in by_id.items():
            for r in found:
                if r["status"] not in ("submitted", "discarded"):
                    continue
                earlier = chosen.setdefault(record_id, {}).get(r["user_id"])
                if earlier is None or (split == split_of.get(record_id) != earlier["split"]):
                    chosen[record_id][r["user_id"]] = {
                        "user_id": r["user_id"],
                        "status": r["status"],
                        "split": split,
                        "value": sorted(
                            ({"start": s["start"], "end": s["end"]} for s in r["value"] or []),
                            key=lambda s: (s["start"], s["end"]),
                        ),
                    }
    return [
        {"id": record_id, "responses": [by_user[u] for u in sorted(by_user)]}
        for record_id, by_user in sorted(chosen.items())
    ]


def missing_from(rows: list[dict], previous: list[dict]) -> dict[str, list[dict]]:
    """{id: responses} of the previous snapshot whose reviewer has no final response to that headline now."""
    seen = {row["id"]: {r["user_id"] for r in row["responses"]} for row in rows}
    missing: dict[str, list[dict]] = {}
    for row in previous:
        # an old snapshot may list an id once per split (core/legacy.py): a reviewer still counts once
        for response in row["responses"]:
            if response["user_id"] not in seen.setdefault(row["id"], set()):
                seen[row["id"]].add(response["user_id"])
                missing.setdefault(row["id"], []).append({"split": split_of_snapshot_row(row)} | response)
    return missing


def with_missing(rows: list[dict], missing: dict[str, list[dict]]) -> list[dict]:
    """The snapshot with the previous snapshot's missing responses put back (rows and responses sorted)."""
    merged = {row["id"]: list(row["responses"]) for row in rows}
    for record_id, responses in missing.items():
        merged.setdefault(record_id, []).extend(responses)
    return [
        {"id": record_id, "responses": sorted(found, key=lambda r: r["user_id"])}
        for record_id, found in sorted(merged.items())
    ]


def pull(server: ArgillaServer) -> dict[str, dict[str, list[dict]]]:
    """Every response per split ({split: {id: responses}}), from its dataset and its overlap dataset (a record that
    changed dataset keeps both datasets' answers); a dataset not created yet has none."""
    responses: dict[str, dict[str, list[dict]]] = {}
    for name in SPLITS:
        responses[name] = {}
        for overlap in (False, True):
            dataset = server.dataset(name, overlap)
            if dataset is not None:
                for record_id, found in server.pull(dataset)[1].items():
                    responses[name].setdefault(record_id, []).extend(found)
    return responses


def polls_every_repro(dvc_file: Path = Path("dvc.yaml")) -> bool | None:
    """Whether dvc.yaml (in the directory DVC runs stages from) says `always_changed: true` for this stage; None
    when there is no dvc.yaml there (the stage run by hand, as the tests do)."""
    if not dvc_file.exists():
        return None
    stage = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}).get(STAGE) or {}
    return bool(stage.get("always_changed"))


def check_polling(server_kind: str, polls: bool | None) -> None:
    """server: argilla needs DVC to run this stage on every repro; server: none is better off without it."""
    if server_kind == "argilla" and polls is False:
        raise ParamsError(
            "params.yaml: argilla_review.server: 'argilla' needs `always_changed: true` on the argilla_pull stage "
            "in dvc.yaml, so that every `dvc repro` asks the server for new submissions (DVC cannot take it from "
            "params); set it there, and back to false with server: none. Nothing was written"
        )
    if server_kind == "none" and polls:
        log.warning(
            "argilla_pull: server none, but dvc.yaml has always_changed: true on this stage: every `dvc repro` "
            "runs it for nothing and `dvc status` is never clean; set it to false"
        )


def write_snapshot(path: Path, rows: list[dict]) -> None:
    """The sorted snapshot; with no row, one blank line (read_jsonl skips it), which DVC does not warn of."""
    if rows:
        write_jsonl(path, rows)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = stage_args(__doc__.splitlines()[0], ("split-dir", "out"), argv)
    params = load_params(ReviewParams)
    server_kind = params.server
    check_polling(server_kind, polls_every_repro())
    previous = read_jsonl(args.out) if args.out.exists() else []
    responses, split_of = {}, {}
    if server_kind == "argilla":
        responses = pull(ArgillaServer(params, STAGE))
        split_of = {
            i: name for name in SPLITS for i in read_table(args.split_dir / f"{name}.parquet", ["id"])["id"].to_list()
        }
    rows = snapshot_rows(responses, split_of)
    missing = missing_from(rows, previous)
    if missing:
        what = (
            f"{sum(len(found) for found in missing.values())} responses to {len(missing)} records that server "
            f"{server_kind} no longer holds ({', '.join(sorted(missing)[:10])}{' ...' if len(missing) > 10 else ''})"
        )
        if params.keep_missing_submissions:
            rows = with_missing(rows, missing)
            log.warning(
                "argilla_pull: kept from the previous snapshot: %s; argilla_review.keep_missing_submissions: "
                "false would drop them",
                what,
            )
        else:
            log.warning("argilla_pull: dropped %s, as argilla_review.keep_missing_submissions: false says", what)
    write_snapshot(args.out, rows)
    log.info(
        "argilla_pull: server %s: %d records with a submitted or discarded response -> %s",
        server_kind,
        len(rows),
        args.out,
    )


if __name__ == "__main__":
    run_stage(main)
