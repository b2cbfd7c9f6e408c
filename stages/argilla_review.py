"""argilla_review: the label every record trains and is scored on, and where it came from.

Inputs: the split tables (teacher's spans), the reviewers' submissions that `argilla_pull` pulled from
Argilla, and human labels from files named in `argilla_review.label_files` (JSONL, an exported dataset
directory, or CoNLL/IOB2). Precedence, per headline: a submission in Argilla (the newest human decision;
Discard removes the record from training and evaluation) > a label from a file > the teacher's spans.
Submissions belong to the headline id, whichever split's dataset they were made in, so a headline that
moves split keeps its review. Several reviewers of one headline are resolved by `resolve_responses`.
Auto-accept (stages/review/accept.py): the rule fitted on the human-labelled train and valid headlines, with the
scout's scores (the priority table), marks the unreviewed headlines whose teacher label meets
`argilla_review.accept_precision` as `accepted`; how the rule held, cross-fitted and on the test split's human
labels, and each confidence source's calibration go to metrics/calibration.json and a reliability curve per source.
The split tables go on unchanged (the teacher's `teacher_spans` included) with the label columns added:
`label_spans`, `label_source`, `reviewed`, `discarded`, `human_origin` (stages/labels/records.py).

`python -m stages.argilla_review --export DIR [--hub-repo ID]` saves the reviewed splits as a
Hugging Face DatasetDict (and pushes it to the hub when a repo id is given).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from stages.core.cli import run_stage, setup_logging, stage_parser
from stages.core.errors import PipelineError
from stages.core.io import log, read_jsonl, read_table, replacing_dir, write_csv, write_json, write_table
from stages.core.metrics import entity_scores
from stages.core.params import load_params
from stages.core.schema import SPLITS, seeded_share
from stages.core.stage_params import ReviewParams
from stages.labels.files import accepted, read_label_files
from stages.labels.records import ACCEPTED, HUMAN, HUMAN_LABELLED, LLM, NONE
from stages.labels.resolve import candidates, resolve
from stages.review.agreement import agreement
from stages.review.responses import resolve_responses
from stages.review.tables import auto_accept, judged_labels, review_queue


def merge(
    frame: pl.DataFrame, responses: dict[str, list[dict]], file_labels: dict[str, dict]
) -> tuple[pl.DataFrame, list[dict]]:
    """Argilla submissions win, then file labels, then the teacher; discarded records lose their label. Also the
    reviewer conflicts of this frame's records ({id, text, resolved_by, votes}, by id)."""
    spans, reviewed, discarded, sources, origins, conflicts = [], [], [], [], [], []
    for row in frame.iter_rows(named=True):
        decision, conflict = resolve_responses(responses.get(row["id"], []))
        origin = None
        if conflict:
            conflicts.append({"id": row["id"], "text": row["text"]} | conflict)
        if decision is not None and decision[0] == "discarded":
            label, source, origin = [], NONE, "argilla"
        elif decision is not None:
            label, source, origin = (
                [{"start": a, "end": b, "text": row["text"][a:b]} for a, b in decision[1]],
                HUMAN,
                "argilla",
            )
        elif row["id"] in file_labels:
            label, source, origin = file_labels[row["id"]]["spans"], HUMAN, "file"
        else:
            label, source = row["teacher_spans"], LLM if row["valid"] else NONE
        spans.append(label)
        sources.append(source)
        origins.append(origin)
        reviewed.append(origin is not None)
        discarded.append(decision is not None and decision[0] == "discarded")
    return frame.with_columns(
        pl.Series("label_spans", spans, dtype=frame.schema["teacher_spans"]),
        pl.Series("reviewed", reviewed, dtype=pl.Boolean),
        pl.Series("discarded", discarded, dtype=pl.Boolean),
        pl.Series("label_source", sources, dtype=pl.String),
        pl.Series("human_origin", origins, dtype=pl.String),
    ), sorted(conflicts, key=lambda c: c["id"])


def review_metrics(merged: pl.DataFrame, conflicts: list[dict]) -> dict:
    human = merged.filter(HUMAN_LABELLED)
    teacher = entity_scores(human["label_spans"].to_list(), human["teacher_spans"].to_list())
    return {
        "records": merged.height,
        "reviewed": int(merged["reviewed"].sum()),
        "human": human.height,
        "human_from_argilla": int((human["human_origin"] == "argilla").sum()),
        "human_from_files": int((human["human_origin"] == "file").sum()),
        "discarded": int(merged["discarded"].sum()),
        "unlabelled": int((merged["label_source"] == NONE).sum()),
        "accepted": int((merged["label_source"] == ACCEPTED).sum()),
        "reviewer_conflicts": len(conflicts),
        "reviewer_conflict_records": conflicts,
        "teacher_vs_human": {k: teacher[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")},
    }


def missing_reviews(merged: dict[str, pl.DataFrame], required: Sequence[str]) -> list[str]:
    return [
        f"{name}: {int((~merged[name]['reviewed']).sum())} of {merged[name].height} not reviewed"
        for name in required
        if not merged[name]["reviewed"].all()
    ]


def file_labels_by_split(
    params: ReviewParams, label_dir: Path, headlines: pl.DataFrame, splits: dict[str, pl.DataFrame]
) -> tuple[dict, dict]:
    """File labels per split ({id: {spans, where}}), with train cut to the reviewed fraction; and counts (lines
    that Prodigy's `answer` rejects or ignores are no label: counted apart). Labels of headlines this run did not
    fetch, and of fetched headlines outside the sample, are counted, not used."""
    by_file = read_label_files(params, label_dir)
    labels = [label for from_file in by_file.values() for label in from_file]
    counts = {path: len(accepted(from_file)) for path, from_file in by_file.items()}
    rejected = {path: len(from_file) - counts[path] for path, from_file in by_file.items()}
    resolved = resolve(labels, candidates(labels, headlines))
    per_split = {
        name: {i: resolved.labels[i] for i in frame["id"].to_list() if i in resolved.labels}
        for name, frame in splits.items()
    }
    keep = seeded_share(sorted(per_split["train"]), params.train_reviewed_fraction, params.seed)
    per_split["train"] = {i: label for i, label in per_split["train"].items() if i in keep}
    sampled = set().union(*(frame["id"].to_list() for frame in splits.values()))
    summary = resolved.summary() | {"fetched_not_in_sample": len(set(resolved.labels) - sampled)}
    if summary["labels_not_in_run"] or summary["fetched_not_in_sample"]:
        log.info(
            "argilla_review: %d file label(s) name no headline of this run (the first: %s), %d label fetched "
            "headlines outside the sample (llm_label.limit or split dates); counted in metrics/review.json",
            summary["labels_not_in_run"],
            ", ".join(summary["first_not_in_run"]) or "-",
            summary["fetched_not_in_sample"],
        )
    return per_split, {
        "labels_per_file": counts,
        "rejected_per_file": rejected,
        **summary,
        "in_sample": {name: len(labels) for name, labels in per_split.items()},
    }


def export(reviewed_dir: Path, directory: str, hub_repo: str | None) -> None:
    from datasets import Dataset, DatasetDict

    splits = {name: read_table(reviewed_dir / f"{name}.parquet") for name in SPLITS}
    columns = ["id", "text", "date", "label_spans", "teacher_spans", "reviewed", "label_source"]
    dataset = DatasetDict(
        {
            name: Dataset.from_polars(frame.select(columns).with_columns(pl.col("date").cast(pl.String)))
            for name, frame in splits.items()
        }
    )
    dataset.save_to_disk(directory)
    if hub_repo:
        dataset.push_to_hub(hub_repo, private=True)
    log.info(
        "argilla_review: exported %s to %s%s",
        {n: f.height for n, f in splits.items()},
        directory,
        f" and {hub_repo}" if hub_repo else "",
    )


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(
        __doc__.splitlines()[0],
        optional=(
            "split-dir",
            "submissions",
            "priority",
            "headlines",
            "label-dir",
            "metrics",
            "calibration",
            "reliability-dir",
            "queue",
        ),
    )
    parser.add_argument("--out-dir", type=Path, default=Path("data/reviewed"))
    parser.add_argument("--export", metavar="DIR", help="save --out-dir as a Hugging Face DatasetDict")
    parser.add_argument("--hub-repo", help="with --export: also push it to this hub dataset repo")
    args = parser.parse_args(argv)
    setup_logging()
    if args.export:
        return export(args.out_dir, args.export, args.hub_repo)
    required = (
        "split_dir",
        "submissions",
        "priority",
        "headlines",
        "label_dir",
        "metrics",
        "calibration",
        "reliability_dir",
        "queue",
    )
    if not all(getattr(args, name) for name in required):
        parser.error(", ".join(f"--{name.replace('_', '-')}" for name in required) + " are required (see dvc.yaml)")
    params = load_params(ReviewParams)
    splits = {
        name: read_table(
            args.split_dir / f"{name}.parquet", ["id", "text", "date", "valid", "teacher_spans", "agreement"]
        )
        for name in SPLITS
    }
    submissions = {row["id"]: row["responses"] for row in read_jsonl(args.submissions)}  # by headline, not split
    headlines = read_table(args.headlines, ["id", "text", "date"])
    file_labels, file_counts = file_labels_by_split(params, args.label_dir, headlines, splits)
    merged, conflicts = {}, {}
    for name, frame in splits.items():
        merged[name], conflicts[name] = merge(frame, submissions, file_labels[name])
    missing = missing_reviews(merged, params.require_full_review)
    if missing:
        raise PipelineError(
            "argilla_review: training waits for review (argilla_review.require_full_review): "
            + "; ".join(missing)
            + ". Nothing was written."
        )
    scores = {
        row["id"]: row
        for row in read_table(args.priority, ["id", "priority", "teacher_span_scores", "missed_score"]).iter_rows(
            named=True
        )
    }
    judged = {name: judged_labels(frame, scores) for name, frame in merged.items()}
    merged, calibration, curves = auto_accept(merged, judged, params)
    queue = review_queue(judged, merged, {i: row["priority"] for i, row in scores.items()}, params)
    metrics: dict[str, Any] = {
        "server": params.server,
        "label_files": file_counts,
        # the adjudicated label of a headline Argilla decided is its label_spans (none when discarded)
        "agreement": agreement(
            [
                (submissions[row["id"]], row["label_spans"] or [])
                for frame in merged.values()
                for row in frame.filter(pl.col("human_origin") == "argilla").iter_rows(named=True)
            ]
        ),
    }
    for name, frame in merged.items():
        metrics[name] = review_metrics(frame, conflicts[name])
        write_table(frame, args.out_dir / f"{name}.parquet")
    write_json(args.metrics, metrics)
    write_json(args.calibration, calibration)
    write_table(queue, args.queue)
    with replacing_dir(args.reliability_dir) as staging:  # a source no longer reported leaves no stale curve
        staging.mkdir(parents=True)
        for source, rows in curves.items():
            write_csv(staging / f"{source}.csv", rows, ["bin", "low", "high", "count", "mean_probability", "observed"])
    crossed, held_out = calibration["cross_fitted"] or {}, calibration["test_held_out"]
    log.info(
        "argilla_review: auto-accept at precision %s: accepted unreviewed %s; cross-fitted it accepts %s of %s "
        "human-labelled train/valid headlines (span precision %s), of the test split's %d %d (span precision %s)",
        calibration["accept_precision"],
        calibration["accepted_unreviewed"],
        crossed.get("accepted"),
        crossed.get("headlines"),
        crossed.get("accepted_span_precision"),
        held_out["headlines"],
        held_out["accepted"],
        held_out["accepted_span_precision"],
    )
    for name in SPLITS:
        for c in conflicts[name]:
            log.warning(
                "argilla_review: %s: reviewers disagree on %s %r, resolved by %s: %s",
                name,
                c["id"],
                c["text"],
                c["resolved_by"],
                "; ".join(f"{v['status']} {v['spans']} by {', '.join(v['users'])}" for v in c["votes"]),
            )
    counts = {n: f"{metrics[n]['human']}/{metrics[n]['records']}" for n in SPLITS}
    if not any(metrics[n]["human"] for n in SPLITS):
        log.warning("argilla_review: no human label at all: every record keeps the teacher's spans %s", counts)
    else:
        log.info(
            "argilla_review: human-labelled/records per split %s (argilla %d, files %d); teacher vs human F1 %s",
            counts,
            sum(metrics[n]["human_from_argilla"] for n in SPLITS),
            sum(metrics[n]["human_from_files"] for n in SPLITS),
            {n: metrics[n]["teacher_vs_human"]["f1"] for n in SPLITS},
        )


if __name__ == "__main__":
    run_stage(main)
