"""argilla_review: the label every record trains and is scored on, and where it came from.

Inputs: the split tables (teacher's spans), the reviewers' submissions that `argilla_sync` pulled from
Argilla, and human labels from files named in `argilla_review.label_files` (JSONL, an exported dataset
directory, or CoNLL/IOB2). Precedence, per headline: a submission in Argilla (the newest human decision;
Discard removes the record from training and evaluation) > a label from a file > the teacher's spans.
The split tables go on unchanged (the teacher's `teacher_spans` included) with the label columns added:
`label_spans`, `label_source`, `reviewed`, `discarded`, `human_origin` (stages/common/records.py).

`python -m stages.argilla_review --export DIR [--hub-repo ID]` saves the reviewed splits as a
Hugging Face DatasetDict (and pushes it to the hub when a repo id is given).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from stages.common.io import log, read_jsonl, read_table, setup_logging, write_json, write_table
from stages.common.label_files import read_label_file, require_inside, resolve
from stages.common.metrics import entity_scores
from stages.common.params import load_params
from stages.common.stage_params import ReviewParams
from stages.common.records import HUMAN, HUMAN_LABELLED, LLM, NONE
from stages.common.schema import SPLITS, seeded_rank


def chosen_response(responses: list[dict]) -> tuple[dict | None, bool]:
    """The response that counts for a record, and whether submitted reviewers disagree.

    Submitted beats discarded beats nothing (drafts do not count). Several submissions: the first by
    user id, so the choice does not depend on the order the server lists them.
    """
    submitted = sorted((r for r in responses if r["status"] == "submitted"), key=lambda r: r["user_id"])
    if submitted:
        spans = {tuple(sorted((s["start"], s["end"]) for s in r["value"] or [])) for r in submitted}
        return submitted[0], len(spans) > 1
    discarded = [r for r in responses if r["status"] == "discarded"]
    return (discarded[0] if discarded else None), False


def reviewed_share(ids: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded share of the ids (nested: a smaller fraction picks a subset of a larger one)."""
    ranked = sorted(ids, key=lambda i: seeded_rank(seed, i))
    return set(ranked[:round(fraction * len(ranked))])


def merge(frame: pl.DataFrame, responses: dict[str, list[dict]], file_labels: dict[str, dict]) -> pl.DataFrame:
    """Argilla submissions win, then file labels, then the teacher; discarded records lose their label."""
    spans, reviewed, discarded, sources, origins = [], [], [], [], []
    for row in frame.iter_rows(named=True):
        response, _ = chosen_response(responses.get(row["id"], []))
        origin = None
        if response is not None and response["status"] == "discarded":
            label, source, origin = [], NONE, "argilla"
        elif response is not None:
            marked = sorted({(s["start"], s["end"]) for s in response["value"] or []})
            label, source, origin = [{"start": a, "end": b, "text": row["text"][a:b]} for a, b in marked], HUMAN, "argilla"
        elif row["id"] in file_labels:
            label, source, origin = file_labels[row["id"]]["spans"], HUMAN, "file"
        else:
            label, source = row["teacher_spans"], LLM if row["valid"] else NONE
        spans.append(label)
        sources.append(source)
        origins.append(origin)
        reviewed.append(origin is not None)
        discarded.append(response is not None and response["status"] == "discarded")
    return frame.with_columns(
        pl.Series("label_spans", spans, dtype=frame.schema["teacher_spans"]),
        pl.Series("reviewed", reviewed, dtype=pl.Boolean), pl.Series("discarded", discarded, dtype=pl.Boolean),
        pl.Series("label_source", sources, dtype=pl.String), pl.Series("human_origin", origins, dtype=pl.String))


def review_metrics(merged: pl.DataFrame, conflicts: int) -> dict:
    human = merged.filter(HUMAN_LABELLED)
    teacher = entity_scores(human["label_spans"].to_list(), human["teacher_spans"].to_list())
    return {"records": merged.height, "reviewed": int(merged["reviewed"].sum()), "human": human.height,
            "human_from_argilla": int((human["human_origin"] == "argilla").sum()),
            "human_from_files": int((human["human_origin"] == "file").sum()),
            "discarded": int(merged["discarded"].sum()), "unlabelled": int((merged["label_source"] == NONE).sum()),
            "reviewer_conflicts": conflicts,
            "teacher_vs_human": {k: teacher[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}}


def missing_reviews(merged: dict[str, pl.DataFrame], required: list[str]) -> list[str]:
    return [f"{name}: {int((~merged[name]['reviewed']).sum())} of {merged[name].height} not reviewed"
            for name in required if not merged[name]["reviewed"].all()]


def file_labels_by_split(params: ReviewParams, label_dir: Path, headlines: pl.DataFrame,
                         splits: dict[str, pl.DataFrame]) -> tuple[dict, dict]:
    """File labels per split ({id: {spans, where}}), with train cut to the reviewed fraction; and counts."""
    labels, counts = [], {}
    for path in params.label_files:
        require_inside(path, label_dir, "argilla_review.label_files")
        from_file = read_label_file(path, params.entity_labels)
        labels += from_file
        counts[str(path)] = len(from_file)
    resolved = resolve(labels, headlines.select("id", "text", "date").to_dicts())
    per_split = {name: {i: resolved[i] for i in frame["id"].to_list() if i in resolved} for name, frame in splits.items()}
    keep = reviewed_share(sorted(per_split["train"]), params.train_reviewed_fraction, params.seed)
    per_split["train"] = {i: label for i, label in per_split["train"].items() if i in keep}
    return per_split, {"labels_per_file": counts,
                       "in_sample": {name: len(labels) for name, labels in per_split.items()}}


def export(reviewed_dir: Path, directory: str, hub_repo: str | None) -> None:
    from datasets import Dataset, DatasetDict

    splits = {name: read_table(reviewed_dir / f"{name}.parquet") for name in SPLITS}
    columns = ["id", "text", "date", "label_spans", "teacher_spans", "reviewed", "label_source"]
    dataset = DatasetDict({name: Dataset.from_polars(frame.select(columns).with_columns(pl.col("date").cast(pl.String)))
                           for name, frame in splits.items()})
    dataset.save_to_disk(directory)
    if hub_repo:
        dataset.push_to_hub(hub_repo, private=True)
    log.info("argilla_review: exported %s to %s%s", {n: f.height for n, f in splits.items()}, directory,
             f" and {hub_repo}" if hub_repo else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-dir", type=Path)
    parser.add_argument("--submissions", type=Path)
    parser.add_argument("--headlines", type=Path)
    parser.add_argument("--label-dir", type=Path)
    parser.add_argument("--out-dir", type=Path, default=Path("data/reviewed"))
    parser.add_argument("--metrics", type=Path)
    parser.add_argument("--export", metavar="DIR", help="save --out-dir as a Hugging Face DatasetDict")
    parser.add_argument("--hub-repo", help="with --export: also push it to this hub dataset repo")
    args = parser.parse_args(argv)
    setup_logging()
    if args.export:
        return export(args.out_dir, args.export, args.hub_repo)
    if not all((args.split_dir, args.submissions, args.headlines, args.label_dir, args.metrics)):
        parser.error("--split-dir, --submissions, --headlines, --label-dir and --metrics are required (see dvc.yaml)")
    params = load_params(ReviewParams)
    splits = {name: read_table(args.split_dir / f"{name}.parquet", ["id", "text", "date", "valid", "teacher_spans"])
              for name in SPLITS}
    submissions = {name: {} for name in SPLITS}
    for row in read_jsonl(args.submissions):
        submissions[row["split"]][row["id"]] = row["responses"]
    headlines = read_table(args.headlines, ["id", "text", "date"])
    file_labels, file_counts = file_labels_by_split(params, args.label_dir, headlines, splits)
    merged = {name: merge(frame, submissions[name], file_labels[name]) for name, frame in splits.items()}
    missing = missing_reviews(merged, params.require_full_review)
    if missing:
        raise SystemExit("argilla_review: training waits for review (argilla_review.require_full_review): "
                         + "; ".join(missing) + ". Nothing was written.")
    metrics = {"server": params.server, "label_files": file_counts}
    for name, frame in merged.items():
        conflicts = sum(chosen_response(r)[1] for r in submissions[name].values())
        metrics[name] = review_metrics(frame, conflicts)
        write_table(frame, args.out_dir / f"{name}.parquet")
    write_json(args.metrics, metrics)
    counts = {n: f"{metrics[n]['human']}/{metrics[n]['records']}" for n in SPLITS}
    if not any(metrics[n]["human"] for n in SPLITS):
        log.warning("argilla_review: no human label at all: every record keeps the teacher's spans %s", counts)
    else:
        log.info("argilla_review: human-labelled/records per split %s (argilla %d, files %d); teacher vs human F1 %s",
                 counts, sum(metrics[n]["human_from_argilla"] for n in SPLITS),
                 sum(metrics[n]["human_from_files"] for n in SPLITS),
                 {n: metrics[n]["teacher_vs_human"]["f1"] for n in SPLITS})


if __name__ == "__main__":
    main()
