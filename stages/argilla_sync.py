"""argilla_sync: the reviewers' work as a file DVC tracks (with a server, on every `dvc repro`: always_changed).

With `argilla_review.server: argilla` it pushes the split records to a real Argilla server (one dataset
per split, records keyed by headline id, the teacher's spans as suggestions; only new or changed
records are sent, and responses are never touched), then pulls every submitted or discarded response
into data/review/argilla_submissions.jsonl, sorted, without timestamps: one row per headline id, whichever
split's dataset the review was made in (a review belongs to the headline; each response keeps its
`split` as information). The file is the stage's previous snapshot too (a persistent DVC output): a
submission it holds that the server no longer does (a fresh server, another prefix or workspace, or
`server: none`) is kept and logged, unless `argilla_review.keep_missing_submissions` is false.
The file's hash changes only when reviewers' submissions change, so a `dvc repro` with nothing new reruns
nothing after this cheap check.

DVC can only know the server has something new by asking it on every `dvc repro`, which dvc.yaml says with
`always_changed: true` on this stage; that cannot come from params.yaml (DVC takes a literal there). So dvc.yaml
ships `always_changed: false`, for `server: none`, where the stage does nothing but keep the snapshot and runs only
when its inputs change; with `server: argilla` and no `always_changed: true` the stage stops and says so, rather
than pull once and then miss every later submission. An empty snapshot is written as one blank line (readers skip
it): DVC warns of an empty output four times a run.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import yaml

from stages.core.cli import run_stage, stage_args
from stages.core.errors import EndpointError, ParamsError
from stages.core.io import log, read_jsonl, read_table, write_jsonl
from stages.core.legacy import split_of_snapshot_row
from stages.core.params import load_params
from stages.core.schema import COMPANY, SPLITS
from stages.core.stage_params import LlmLabelParams, ReviewParams

QUESTION = "companies"
METADATA = ("split", "year", "llm_valid", "cluster", "sampled_as", "priority")


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
            "priority": row["priority"],
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


class ArgillaServer:
    """The SDK calls, kept apart from the pure functions above."""

    def __init__(self, params: ReviewParams):
        import argilla as rg

        self.rg, self.params = rg, params
        key_env = params.api_key_env
        api_key, url = os.environ.get(key_env), params.api_url
        if not api_key:
            raise EndpointError(
                f"argilla_sync: set the API key in ${key_env} (make argilla-up prints it); nothing was written"
            )
        try:
            self.client = rg.Argilla(api_url=url, api_key=api_key, timeout=60)
            self.client.me  # noqa: B018 - fails fast on a wrong URL or key
        except Exception as error:  # the SDK raises httpx and its own errors
            raise EndpointError(
                f"argilla_sync: cannot reach Argilla at {url} ({error.__class__.__name__}: {error}). "
                f"Start one with `make argilla-up` or fix argilla_review.api_url; nothing was "
                f"written"
            ) from error

    def dataset(self, split: str, guidelines: str):
        rg, params = self.rg, self.params
        name, workspace = f"{params.dataset_prefix}-{split}", params.workspace
        dataset = self.client.datasets(name=name, workspace=workspace)
        if dataset is not None:
            if "priority" not in [m.name for m in dataset.settings.metadata]:  # a dataset from before priorities
                dataset.settings.metadata.add(rg.FloatMetadataProperty(name="priority", title="Review priority"))
                dataset.update()
            return dataset
        settings = rg.Settings(
            guidelines=guidelines,
            fields=[rg.TextField(name="text", title="Headline")],
            questions=[
                rg.SpanQuestion(
                    name=QUESTION,
                    field="text",
                    labels=[COMPANY],
                    allow_overlapping=False,
                    title="Mark every company or ticker",
                )
            ],
            metadata=[
                rg.TermsMetadataProperty(name="split"),
                rg.IntegerMetadataProperty(name="year"),
                rg.TermsMetadataProperty(name="llm_valid"),
                rg.TermsMetadataProperty(name="cluster"),
                rg.TermsMetadataProperty(name="sampled_as"),
                rg.FloatMetadataProperty(name="priority", title="Review priority"),
            ],
        )
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=self.client).create()

    def pull(self, dataset) -> tuple[dict[str, dict], dict[str, list[dict]]]:
        """What the server holds per record (as argilla_record dicts) and every response to our question."""
        existing, responses = {}, {}
        for record in dataset.records(with_responses=True, with_suggestions=True):
            suggestion = next((s for s in record.suggestions if s.question_name == QUESTION), None)
            metadata = dict(record.metadata or {})
            existing[record.id] = {
                "id": record.id,
                "fields": {"text": record.fields["text"]},
                "metadata": {k: metadata.get(k) for k in METADATA},
                "suggestion": [
                    {"start": s["start"], "end": s["end"], "label": s["label"]}
                    for s in (suggestion.value if suggestion else None) or []
                ],
                "agent": suggestion.agent if suggestion else None,
            }
            responses[record.id] = [
                {"user_id": str(r.user_id), "status": str(getattr(r.status, "value", r.status)), "value": r.value}
                for r in record.responses
                if r.question_name == QUESTION
            ]
        return existing, responses

    def push(self, dataset, records: list[dict]) -> None:
        # An empty teacher answer goes out as an empty suggestion: argilla-server only upserts the suggestions
        # it is sent, so leaving it out would keep a stale one pre-filled for reviewers.
        rg = self.rg
        dataset.records.log(
            [
                rg.Record(
                    id=r["id"],
                    fields=r["fields"],
                    metadata=r["metadata"],
                    suggestions=[rg.Suggestion(question_name=QUESTION, value=r["suggestion"], agent=r["agent"])],
                )
                for r in records
            ],
            batch_size=256,
        )


def sync(
    server: ArgillaServer, splits: dict[str, pl.DataFrame], agent: str, guidelines: str
) -> dict[str, dict[str, list[dict]]]:
    """Pull, then push what the server lacks; returns every response per split's dataset. One pull is enough:
    a push adds records without responses and never touches the responses of records already there."""
    responses = {}
    for name, frame in splits.items():
        dataset = server.dataset(name, guidelines)
        existing, responses[name] = server.pull(dataset)
        wanted = [argilla_record(row | {"split": name}, agent) for row in frame.iter_rows(named=True)]
        changed = records_to_push(wanted, existing)
        if changed:
            server.push(dataset, changed)
        log.info("argilla_sync: %s: pushed %d new or changed of %d records", name, len(changed), len(wanted))
    return responses


def polls_every_repro(dvc_file: Path = Path("dvc.yaml")) -> bool | None:
    """Whether dvc.yaml (in the directory DVC runs stages from) says `always_changed: true` for this stage; None
    when there is no dvc.yaml there (the stage run by hand, as the tests do)."""
    if not dvc_file.exists():
        return None
    stage = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}).get("argilla_sync") or {}
    return bool(stage.get("always_changed"))


def check_polling(server_kind: str, polls: bool | None) -> None:
    """server: argilla needs DVC to run this stage on every repro; server: none is better off without it."""
    if server_kind == "argilla" and polls is False:
        raise ParamsError(
            "params.yaml: argilla_review.server: 'argilla' needs `always_changed: true` on the argilla_sync stage "
            "in dvc.yaml, so that every `dvc repro` asks the server for new submissions (DVC cannot take it from "
            "params); set it there, and back to false with server: none. Nothing was written"
        )
    if server_kind == "none" and polls:
        log.warning(
            "argilla_sync: server none, but dvc.yaml has always_changed: true on this stage: every `dvc repro` "
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
    args = stage_args(__doc__.splitlines()[0], ("split-dir", "priority", "guidelines", "out"), argv)
    params = load_params(ReviewParams)
    server_kind = params.server
    check_polling(server_kind, polls_every_repro())
    previous = read_jsonl(args.out) if args.out.exists() else []
    responses, split_of = {}, {}
    if server_kind == "argilla":
        server = ArgillaServer(params)
        agent = load_params(LlmLabelParams).endpoint.model  # the teacher, as the UI shows it
        priority = read_table(args.priority, ["id", "priority"]).select("id", "priority")
        splits = {
            name: read_table(
                args.split_dir / f"{name}.parquet",
                ["id", "text", "date", "valid", "teacher_spans", "clusters", "sample_reason"],
            ).join(priority, on="id", how="left")
            for name in SPLITS
        }
        responses = sync(server, splits, agent, args.guidelines.read_text(encoding="utf-8"))
        split_of = {i: name for name, frame in splits.items() for i in frame["id"].to_list()}
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
                "argilla_sync: kept from the previous snapshot: %s; argilla_review.keep_missing_submissions: "
                "false would drop them",
                what,
            )
        else:
            log.warning("argilla_sync: dropped %s, as argilla_review.keep_missing_submissions: false says", what)
    write_snapshot(args.out, rows)
    log.info(
        "argilla_sync: server %s: %d records with a submitted or discarded response -> %s",
        server_kind,
        len(rows),
        args.out,
    )


if __name__ == "__main__":
    run_stage(main)
