"""argilla_review: the labels training uses, per split, with where each one came from.

Mode `argilla`: push the split tables to a real Argilla server (one dataset per split, records keyed by
headline id, the teacher's spans as suggestions), pull what reviewers submitted, and merge: a submitted
human label always wins; discarded records are left out (label_source=none); records nobody reviewed
keep the teacher's spans with reviewed=false. Pushing again upserts records and suggestions and never
touches responses. Mode `llm_only`: no server, every record keeps the teacher's spans.

Output columns added to the split tables: `spans` (the label to train and evaluate on), `llm_spans`
(the teacher's, kept to score it), `reviewed`, `discarded`, `label_source`.
`python -m stages.argilla_review --export DIR [--hub-repo ID]` saves the reviewed splits as a
Hugging Face DatasetDict (and pushes it to the hub when a repo id is given).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import polars as pl

from stages.common.io import log, read_table, setup_logging, write_json, write_table
from stages.common.metrics import entity_scores
from stages.common.params import load_params, require
from stages.common.schema import COMPANY
from stages.split import SPLITS

SPLIT_DIR = Path("data/split")
OUT_DIR = Path("data/reviewed")
METRICS = Path("metrics/review.json")
MODES = ("llm_only", "argilla")
QUESTION = "companies"


def argilla_record(row: dict, agent: str) -> dict:
    """What one headline becomes in Argilla, as plain data: id, text, filterable metadata, suggestion."""
    return {"id": row["id"], "fields": {"text": row["text"]},
            "metadata": {"split": row["split"], "year": row["date"].year, "llm_valid": str(row["valid"]).lower(),
                         "cluster": (row.get("clusters") or ["none"])[0], "sampled_as": row["sample_reason"]},
            "suggestion": [{"start": s["start"], "end": s["end"], "label": COMPANY} for s in row["spans"] or []],
            "agent": agent}


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


def merge(frame: pl.DataFrame, responses: dict[str, list[dict]]) -> pl.DataFrame:
    """Human labels win; discarded records lose their label; unreviewed records keep the teacher's spans."""
    spans, reviewed, discarded, sources = [], [], [], []
    for row in frame.iter_rows(named=True):
        response, _ = chosen_response(responses.get(row["id"], []))
        if response is None:
            spans.append(row["spans"])
            sources.append("llm" if row["valid"] else "none")
        elif response["status"] == "discarded":
            spans.append([])
            sources.append("none")
        else:
            marked = sorted({(s["start"], s["end"]) for s in response["value"] or []})
            spans.append([{"start": a, "end": b, "text": row["text"][a:b]} for a, b in marked])
            sources.append("human")
        reviewed.append(response is not None)
        discarded.append(response is not None and response["status"] == "discarded")
    span_type = frame.schema["spans"]
    return frame.with_columns(pl.col("spans").alias("llm_spans")).with_columns(
        pl.Series("spans", spans, dtype=span_type), pl.Series("reviewed", reviewed, dtype=pl.Boolean),
        pl.Series("discarded", discarded, dtype=pl.Boolean), pl.Series("label_source", sources, dtype=pl.String))


def review_metrics(merged: pl.DataFrame, conflicts: int) -> dict:
    human = merged.filter(pl.col("label_source") == "human")
    teacher = entity_scores(human["spans"].to_list(), human["llm_spans"].to_list())
    return {"records": merged.height, "reviewed": int(merged["reviewed"].sum()),
            "discarded": int(merged["discarded"].sum()), "unlabelled": int((merged["label_source"] == "none").sum()),
            "reviewer_conflicts": conflicts,
            "teacher_vs_human": {k: teacher[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}}


def missing_reviews(merged: dict[str, pl.DataFrame], required: list[str]) -> list[str]:
    return [f"{name}: {int((~merged[name]['reviewed']).sum())} of {merged[name].height} not reviewed"
            for name in required if not merged[name]["reviewed"].all()]


class ArgillaServer:
    """The SDK calls, kept apart from the pure core above."""

    def __init__(self, params: dict):
        import argilla as rg

        self.rg, self.params = rg, params
        key_env = params.get("api_key_env", "ARGILLA_API_KEY")
        api_key, url = os.environ.get(key_env), require(params, "api_url", "argilla_review")
        if not api_key:
            raise SystemExit(f"argilla_review: set the API key in ${key_env} (make argilla-up prints it); "
                             f"nothing was written")
        try:
            self.client = rg.Argilla(api_url=url, api_key=api_key, timeout=params.get("timeout_s", 60))
            self.client.me  # noqa: B018 - fails fast on a wrong URL or key
        except Exception as error:  # the SDK raises httpx and its own errors
            raise SystemExit(f"argilla_review: cannot reach Argilla at {url} ({error.__class__.__name__}: {error}). "
                             f"Start one with `make argilla-up` or fix argilla_review.api_url; nothing was written") from error

    def dataset(self, split: str):
        rg, params = self.rg, self.params
        name, workspace = f"{params['dataset_prefix']}-{split}", params.get("workspace", "argilla")
        dataset = self.client.datasets(name=name, workspace=workspace)
        if dataset is not None:
            return dataset
        settings = rg.Settings(
            guidelines=Path(params["guidelines_file"]).read_text(encoding="utf-8"),
            fields=[rg.TextField(name="text", title="Headline")],
            questions=[rg.SpanQuestion(name=QUESTION, field="text", labels=[COMPANY], allow_overlapping=False,
                                       title="Mark every company or ticker")],
            metadata=[rg.TermsMetadataProperty(name="split"), rg.IntegerMetadataProperty(name="year"),
                      rg.TermsMetadataProperty(name="llm_valid"), rg.TermsMetadataProperty(name="cluster"),
                      rg.TermsMetadataProperty(name="sampled_as")])
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=self.client).create()

    def push(self, split: str, records: list[dict]) -> None:
        rg = self.rg
        self.dataset(split).records.log([
            rg.Record(id=r["id"], fields=r["fields"], metadata=r["metadata"],
                      suggestions=[rg.Suggestion(question_name=QUESTION, value=r["suggestion"], agent=r["agent"])]
                      if r["suggestion"] else [])
            for r in records], batch_size=self.params.get("batch_size", 256))

    def responses(self, split: str) -> dict[str, list[dict]]:
        result = {}
        for record in self.dataset(split).records(with_responses=True, with_suggestions=False):
            result[record.id] = [{"user_id": str(r.user_id), "status": str(getattr(r.status, "value", r.status)),
                                  "value": r.value} for r in record.responses if r.question_name == QUESTION]
        return result


def export(directory: str, hub_repo: str | None) -> None:
    from datasets import Dataset, DatasetDict

    splits = {name: read_table(OUT_DIR / f"{name}.parquet") for name in SPLITS}
    columns = ["id", "text", "date", "spans", "llm_spans", "reviewed", "label_source"]
    dataset = DatasetDict({name: Dataset.from_polars(frame.select(columns).with_columns(pl.col("date").cast(pl.String)))
                           for name, frame in splits.items()})
    dataset.save_to_disk(directory)
    if hub_repo:
        dataset.push_to_hub(hub_repo, private=True)
    log.info("argilla_review: exported %s to %s%s", {n: f.height for n, f in splits.items()}, directory,
             f" and {hub_repo}" if hub_repo else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", metavar="DIR", help="save data/reviewed as a Hugging Face DatasetDict")
    parser.add_argument("--hub-repo", help="with --export: also push it to this hub dataset repo")
    args = parser.parse_args(argv)
    setup_logging()
    if args.export:
        return export(args.export, args.hub_repo)
    params = load_params("argilla_review")
    mode = require(params, "mode", "argilla_review")
    if mode not in MODES:
        raise SystemExit(f"params.yaml: argilla_review.mode must be one of {MODES}, got {mode!r}")
    splits = {name: read_table(SPLIT_DIR / f"{name}.parquet", ["id", "text", "date", "valid", "spans"])
              .with_columns(split=pl.lit(name)) for name in SPLITS}
    responses: dict[str, dict] = {name: {} for name in SPLITS}
    if mode == "argilla":
        server = ArgillaServer(params)
        agent = require(load_params("llm_label"), "endpoint.model", "llm_label")  # the teacher, as the UI shows it
        for name, frame in splits.items():
            server.push(name, [argilla_record(row, agent) for row in frame.iter_rows(named=True)])
            responses[name] = server.responses(name)
    merged = {name: merge(frame.drop("split"), responses[name]) for name, frame in splits.items()}
    missing = missing_reviews(merged, params.get("require_full_review") or []) if mode == "argilla" else []
    if missing:
        raise SystemExit("argilla_review: training waits for review (argilla_review.require_full_review): "
                         + "; ".join(missing) + ". Nothing was written.")
    metrics = {"mode": mode}
    for name, frame in merged.items():
        conflicts = sum(chosen_response(r)[1] for r in responses[name].values())
        metrics[name] = review_metrics(frame, conflicts)
        write_table(frame, OUT_DIR / f"{name}.parquet")
    write_json(METRICS, metrics)
    counts = {n: f"{metrics[n]['reviewed']}/{metrics[n]['records']}" for n in SPLITS}
    if mode == "llm_only":
        log.warning("argilla_review: mode llm_only: no human review, every record keeps the teacher's spans %s", counts)
    else:
        log.info("argilla_review: reviewed/records per split %s; teacher vs human F1 %s", counts,
                 {n: metrics[n]["teacher_vs_human"]["f1"] for n in SPLITS})


if __name__ == "__main__":
    main()
