"""The label columns of a reviewed table and what counts as a human label, written once.

From llm_label on, a table carries the teacher's character spans in `teacher_spans` (with `valid`: the teacher
answered in form). argilla_review keeps them and adds the label a record trains and is scored on:
`label_spans`, with `label_source` saying whose it is (human | accepted: the teacher's, taken unseen by the
auto-accept rule, stages/review/accept.py | llm | none: no usable label), `reviewed`,
`discarded` and `human_origin` (argilla | file). Stages and scripts read labels through the records below
(core.schema.Record: id, text, spans, label_source), where `spans` is the one label that record stands for.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from stages.core.schema import Record, seeded_rank

HUMAN, ACCEPTED, LLM, NONE = "human", "accepted", "llm", "none"  # the values of label_source
LABEL_COLUMNS = ["label_source", "label_spans", "teacher_spans", "valid"]  # what labelled_records reads
HUMAN_LABELLED = pl.col("label_source") == HUMAN
UnreviewedRule = Literal["keep", "drop", "pretrain"]  # finetune_*.unreviewed: see unreviewed_rule


def is_human(record: Record) -> bool:
    return record["label_source"] == HUMAN


def human_records(records: list[Record]) -> list[Record]:
    return [r for r in records if is_human(r)]


def labelled_records(frame: pl.DataFrame, labels: Literal["reviewed", "teacher"] = "reviewed") -> list[Record]:
    """Records with a usable label, sorted by id for a fixed order.

    labels="reviewed": the label argilla_review chose (human where there is one, else the teacher's);
    labels="teacher": the teacher's label of every validly answered headline (what the weak-vs-human
    comparison trains on), so its label_source is llm whoever reviewed the headline.
    """
    if labels == "reviewed":
        usable, column = frame.filter(pl.col("label_source") != NONE), "label_spans"
    else:
        usable, column = frame.filter(pl.col("valid")), "teacher_spans"
    return [
        Record(
            id=r["id"],
            text=r["text"],
            spans=r[column] or [],
            label_source=r["label_source"] if labels == "reviewed" else LLM,
        )
        for r in usable.sort("id").iter_rows(named=True)
    ]


def trusted_records(records: list[Record]) -> list[Record]:
    """The human-labelled records and the teacher's labels auto-accepted at the precision target: what trains
    when unreviewed teacher labels do not. Only human labels ever pick an epoch or grade a model."""
    return [r for r in records if r["label_source"] in (HUMAN, ACCEPTED)]


def human_or_all(records: list[Record]) -> list[Record]:
    """The human-labelled records when there are any, else all: the teacher's labels must not pick the best
    epoch (or grade a model) when humans have labelled something."""
    return human_records(records) or records


def unreviewed_rule(records: list[Record], rule: UnreviewedRule) -> list[Record]:
    """How headlines no human labelled enter training: with the teacher's labels (keep), not at all (drop), or
    only through a first model trained on the teacher's labels that the human labels then fine-tune (pretrain:
    these are the fine-tuning's records; the finetune stage adds the first training). Auto-accepted teacher
    labels train with the human ones under every rule. Weak labels can cost more
    than they add when the teacher is weak, so this is a choice, not a default. (A loss weight below 1 is not
    offered: neither library's trainer takes per-example weights cleanly.)"""
    return records if rule == "keep" else trusted_records(records)


def seeded_subset(records: list[Record], limit: int | None, seed: int) -> list[Record]:
    """The first `limit` records in a seeded order (nested: a smaller limit is a subset of a larger one)."""
    if not limit or limit >= len(records):
        return records
    ranked = sorted(records, key=lambda r: seeded_rank(seed, r["id"]))
    return sorted(ranked[:limit], key=lambda r: r["id"])
