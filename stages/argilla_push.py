"""argilla_push: send reviewers this round's headlines in Argilla (new or changed records only).

With `argilla_review.server: argilla`, the valid and test splits go whole (they grade the students: all of them are
reviewed, in no model's order) and the train split a round at a time: the `argilla_review.batch_size` headlines
argilla_review's queue puts first (the most expected errors under the calibration learned so far; never an
auto-accepted or reviewed one), or every train headline with batch_size null. A record carries the teacher's spans
as its suggestion and, in its metadata, the scout's priority, the expected errors and the calibrated probability
that the suggestion is right (Argilla 2.x stores no score on a span suggestion). A seeded
`argilla_review.two_reviewer_share` of each split goes to the split's overlap dataset, which asks two reviewers.
A record sent in an earlier round stays as it is when this round leaves it out; responses are never touched. With
`server: none` it sends nothing and reports the round it would send. metrics/argilla_push.json: per split, the
records of this round and how many were new or changed on the server.
"""

from __future__ import annotations

import polars as pl

from stages.core.cli import run_stage, stage_args
from stages.core.io import log, read_table, write_json
from stages.core.params import load_params
from stages.core.schema import COMPANY, SPLITS, seeded_share
from stages.core.stage_params import LlmLabelParams, ReviewParams
from stages.review.argilla_api import FLOATS, ArgillaServer

STAGE = "argilla_push"
SPLIT_COLUMNS = ["id", "text", "date", "valid", "teacher_spans", "clusters", "sample_reason"]


def argilla_record(row: dict, agent: str) -> dict:
    """What one headline becomes in Argilla, as plain data: id, text, filterable metadata (the review priority
    among them: reviewers sort by it), suggestion."""
    return {
        "id": row["id"],
        "fields": {"text": row["text"]},
        "metadata": {
            "split": row["split"],
            "year": row["date"].year,
            "llm_valid": str(row["valid"]).lower(),
            "cluster": (row.get("clusters") or ["none"])[0],
            "sampled_as": row["sample_reason"],
            **{name: row[name] for name in FLOATS if row.get(name) is not None},
        },
        "suggestion": [{"start": s["start"], "end": s["end"], "label": COMPANY} for s in row["teacher_spans"] or []],
        "agent": agent,
    }


def records_to_push(wanted: list[dict], existing: dict[str, dict]) -> list[dict]:
    """The records that are new on the server or differ from what it holds (text, metadata, suggestion)."""

    def signature(record: dict) -> tuple:
        return (
            record["fields"],
            record["metadata"],
            sorted(tuple(sorted(s.items())) for s in record["suggestion"]),
            record["agent"] if record["suggestion"] else None,
        )

    return [r for r in wanted if r["id"] not in existing or signature(existing[r["id"]]) != signature(r)]


def this_round(splits: dict[str, pl.DataFrame], queue: pl.DataFrame, batch_size: int | None) -> dict[str, pl.DataFrame]:
    """The records to send per split, with their queue columns: valid and test whole, train's batch in queue order
    (every train headline without a batch size)."""
    rows = {name: frame.join(queue, on="id", how="left") for name, frame in splits.items()}
    if batch_size is not None:
        rows["train"] = rows["train"].filter(pl.col("batch").is_not_null()).sort("batch")
    return rows


def push(
    server: ArgillaServer, rows: dict[str, pl.DataFrame], agent: str, guidelines: str, share: float, seed: int
) -> dict[str, int]:
    """Send each split's records that are new or changed on the server; how many per split."""
    sent = {}
    for name, frame in rows.items():
        wanted = [argilla_record(row | {"split": name}, agent) for row in frame.iter_rows(named=True)]
        twice = seeded_share([r["id"] for r in wanted], share, seed)
        sent[name] = 0
        for overlap in (False, True):
            mine = [r for r in wanted if (r["id"] in twice) == overlap]
            if not mine:
                continue
            dataset = server.dataset(name, overlap, guidelines)
            existing, _ = server.pull(dataset)
            changed = records_to_push(mine, existing)
            if changed:
                server.push(dataset, changed)
            sent[name] += len(changed)
        log.info(
            "argilla_push: %s: pushed %d new or changed of %d records (%d for two reviewers)",
            name,
            sent[name],
            len(wanted),
            len(twice),
        )
    return sent


def main(argv: list[str] | None = None) -> None:
    args = stage_args(__doc__.splitlines()[0], ("split-dir", "queue", "guidelines", "metrics"), argv)
    params = load_params(ReviewParams)
    queue = read_table(args.queue, ["id", "batch", *FLOATS])
    splits = {name: read_table(args.split_dir / f"{name}.parquet", SPLIT_COLUMNS) for name in SPLITS}
    rows = this_round(splits, queue, params.batch_size)
    sent = None
    if params.server == "argilla":
        agent = load_params(LlmLabelParams).endpoint.model  # the teacher, as the UI shows it
        server = ArgillaServer(params, STAGE)
        guidelines = args.guidelines.read_text(encoding="utf-8")
        sent = push(server, rows, agent, guidelines, params.two_reviewer_share, params.seed)
    batch = rows["train"]
    write_json(
        args.metrics,
        {
            "server": params.server,
            "batch_size": params.batch_size,
            "records": {name: frame.height for name, frame in rows.items()},
            "new_or_changed": sent,
            "train_expected_errors": round(float(batch["expected_errors"].fill_null(0.0).sum()), 4),
        },
    )
    log.info(
        "argilla_push: server %s: this round %s records per split (train: %s)%s",
        params.server,
        {name: frame.height for name, frame in rows.items()},
        "all" if params.batch_size is None else f"the next {batch.height} by expected errors",
        "" if sent is not None else "; nothing sent (server none)",
    )


if __name__ == "__main__":
    run_stage(main)
