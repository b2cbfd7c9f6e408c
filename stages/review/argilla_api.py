"""The Argilla SDK calls argilla_pull and argilla_push make, kept apart from their pure functions.

One dataset per split (`<prefix>-<split>`), and one more per split for the records two reviewers answer
(`<prefix>-<split>-overlap`, Argilla's TaskDistribution min_submitted: 2); records keyed by headline id, the
teacher's spans as the suggestion of one span question.
"""

from __future__ import annotations

import os

from stages.core.errors import EndpointError
from stages.core.schema import COMPANY
from stages.core.stage_params import ReviewParams

QUESTION = "companies"
OVERLAP_SUFFIX = "-overlap"  # the dataset of a split whose records two reviewers answer
# Record metadata reviewers filter and sort by; the float ones can be missing (no calibration yet)
TERMS = ("split", "llm_valid", "cluster", "sampled_as")
FLOATS = {
    "priority": "Review priority",
    "expected_errors": "Expected wrong or missed spans",
    "label_confidence": "P(suggestion is right)",
}
METADATA = (*TERMS, "year", *FLOATS)


class ArgillaServer:
    """A connection to the server of argilla_review's params, and the calls the stages make."""

    def __init__(self, params: ReviewParams, stage: str):
        import argilla as rg

        self.rg, self.params = rg, params
        key_env = params.api_key_env
        api_key, url = os.environ.get(key_env), params.api_url
        if not api_key:
            raise EndpointError(
                f"{stage}: set the API key in ${key_env} (make argilla-up prints it); nothing was written"
            )
        try:
            self.client = rg.Argilla(api_url=url, api_key=api_key, timeout=60)
            self.client.me  # noqa: B018 - fails fast on a wrong URL or key
        except Exception as error:  # the SDK raises httpx and its own errors
            raise EndpointError(
                f"{stage}: cannot reach Argilla at {url} ({error.__class__.__name__}: {error}). "
                f"Start one with `make argilla-up` or fix argilla_review.api_url; nothing was "
                f"written"
            ) from error

    def dataset(self, split: str, overlap: bool, guidelines: str | None = None):
        """The split's dataset (overlap: the one two reviewers answer each record of), created with `guidelines`
        when it does not exist; without them, None then."""
        rg, params = self.rg, self.params
        name, workspace = f"{params.dataset_prefix}-{split}{OVERLAP_SUFFIX if overlap else ''}", params.workspace
        dataset = self.client.datasets(name=name, workspace=workspace)
        if dataset is None and guidelines is None:
            return None
        if dataset is not None:
            held = [m.name for m in dataset.settings.metadata]
            missing = [name for name in FLOATS if name not in held]  # a dataset from before these scores
            for name in missing:
                dataset.settings.metadata.add(rg.FloatMetadataProperty(name=name, title=FLOATS[name]))
            if missing:
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
                *(rg.TermsMetadataProperty(name=name) for name in TERMS),
                rg.IntegerMetadataProperty(name="year"),
                *(rg.FloatMetadataProperty(name=name, title=title) for name, title in FLOATS.items()),
            ],
            distribution=rg.TaskDistribution(min_submitted=2 if overlap else 1),
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
                "metadata": {k: metadata[k] for k in METADATA if metadata.get(k) is not None},
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
