"""The pydantic models of the pipeline's params sections (students' sections: student_params.py).

params.yaml is the one place defaults live: no field here has a default that params.yaml must not set.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stages.core.params import Fraction, Section


def strict_date(value: Any) -> dt.date | None:
    """A whole YYYY-MM-DD date (YAML may already have parsed it), or None."""
    if value is None or isinstance(value, dt.date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected a real date written YYYY-MM-DD")


class DateRange(Section):
    start: dt.date | None
    end: dt.date | None

    _dates = field_validator("start", "end", mode="before")(strict_date)

    @model_validator(mode="after")
    def ordered(self):
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class RequiredDateRange(DateRange):
    start: dt.date
    end: dt.date


class HfDataset(Section):
    path: str
    name: str | None  # the dataset's configuration, for datasets that have several
    revision: str = Field(min_length=7)  # pinned: the same rows on every rerun
    data_files: str | list[str] | None
    split: str


class RowFilter(Section):
    column: str
    equals: str | int | float | None = None
    contains: str | None = None
    in_: list[str | int | float] | None = Field(None, alias="in")

    @model_validator(mode="after")
    def exactly_one_test(self):
        if sum(v is not None for v in (self.equals, self.contains, self.in_)) != 1:
            raise ValueError("needs exactly one of equals / contains / in")
        return self


class FetchParams(Section):
    SECTION = "fetch"
    source: str = Field(min_length=1)
    kind: Literal["file", "hf_dataset"]
    path: str
    hf_dataset: HfDataset
    columns: dict[Literal["text", "date"], str]
    keep_columns: list[str]
    filters: list[RowFilter]
    date_range: DateRange
    on_bad_row: Literal["error", "drop"]

    @field_validator("columns")
    @classmethod
    def both_columns(cls, value):
        if set(value) != {"text", "date"}:
            raise ValueError("needs both text and date: {text: <source column>, date: <source column>}")
        return value


class Endpoint(Section):
    base_url: str = Field(min_length=1)  # "local": the bundled llama.cpp teacher
    model: str = Field(min_length=1)
    token_env: str | None
    response_format: Literal["llama_cpp", "tgi", "openai", "none"]

    @field_validator("base_url")
    @classmethod
    def local_or_http_url(cls, value: str) -> str:
        """A typo here would otherwise be retried as a connection failure for every headline."""
        url = urllib.parse.urlparse(value)
        if value != "local" and (url.scheme not in ("http", "https") or not url.hostname):
            raise ValueError(
                "expected 'local' or an http(s) URL with a host, e.g. https://<name>.endpoints.huggingface.cloud"
            )
        return value


class ExtractiveSettings(Section):
    enabled: bool
    max_words: int = Field(gt=0)
    max_items: int = Field(gt=0)
    free_names: bool
    max_name_chars: int = Field(gt=0)


class Generation(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # extras go to the endpoint as they are (top_p, ...)
    temperature: float = Field(ge=0)
    max_tokens: int = Field(gt=0)
    seed: int


class ConcurrencyRange(Section):
    min: int = Field(ge=1)
    start: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def ordered(self):
        if not self.min <= self.start <= self.max:
            raise ValueError(f"needs min <= start <= max, got {self.min}, {self.start}, {self.max}")
        return self


class SelfConsistency(Section):
    samples: int = Field(ge=1)
    temperature: float = Field(ge=0)


class Cost(Section):
    usd_per_hour: float | None = Field(None, ge=0)  # endpoint price per hour, or the per-token prices below
    usd_per_million_prompt_tokens: float | None = Field(None, ge=0)
    usd_per_million_completion_tokens: float | None = Field(None, ge=0)


class LlmLabelParams(Section):
    SECTION = "llm_label"
    prompt_file: str
    endpoint: Endpoint
    extractive: ExtractiveSettings
    generation: Generation
    limit: int | None = Field(gt=0)
    sample_seed: int
    concurrency: ConcurrencyRange
    local_threads: int | None = Field(gt=0)
    timeout_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1)
    occurrences: Literal["all", "first"]
    fail_on_request_errors: bool
    self_consistency: SelfConsistency
    cost: Cost
    budget_usd: float | None = Field(gt=0)  # what the answers a run uses may cost in all; null: no cap
    expected_headlines_per_s: float = Field(gt=0)


class ClusterSampleParams(Section):
    SECTION = "cluster_sample"
    scorer: Literal["ratio", "token_sort_ratio", "WRatio"]
    threshold: float = Field(ge=0, le=100)
    strip_suffixes: list[str]
    cluster_fraction: float = Fraction
    no_company_fraction: float = Fraction
    invalid_fraction: float = Fraction
    sample_size: int | None = Field(gt=0)  # headlines in all, split in proportion (the fractions are then unused)
    seed: int


class SplitParams(Section):
    SECTION = "split"
    ranges: dict[Literal["train", "valid", "test"], RequiredDateRange]

    @field_validator("ranges")
    @classmethod
    def all_splits(cls, value):
        missing = [name for name in ("train", "valid", "test") if name not in value]
        if missing:
            raise ValueError(f"missing range(s) for {missing}")
        return value


def span_types_apart(self):
    """A span label either means a company or is left out on purpose, never both."""
    both = sorted({label.lower() for label in self.entity_labels} & {label.lower() for label in self.ignored_labels})
    if both:
        raise ValueError(f"{both} is in both entity_labels and ignored_labels")
    return self


class ReviewParams(Section):
    SECTION = "argilla_review"
    server: Literal["none", "argilla"]
    api_url: str
    api_key_env: str = Field(min_length=1)
    workspace: str
    dataset_prefix: str = Field(min_length=1)
    guidelines_file: str
    label_dir: str
    label_files: list[str]
    entity_labels: list[str] = Field(min_length=1)
    ignored_labels: list[str]
    train_reviewed_fraction: float = Fraction
    seed: int
    require_full_review: list[Literal["train", "valid", "test"]]
    keep_missing_submissions: bool
    # auto-accept's precision target (stages/review/accept.py); None: every label waits for a human
    accept_precision: float | None = Field(gt=0.5, lt=1)
    calibration_folds: int = Field(ge=2)
    batch_size: int | None = Field(gt=0)  # train headlines argilla_push sends a round; None: all at once
    two_reviewer_share: float = Fraction  # of each split, asked of two reviewers (Argilla TaskDistribution)

    _span_types = model_validator(mode="after")(span_types_apart)


class ScoutWeights(Section):
    disagreement: float = Field(ge=0)
    invalid: float = Field(ge=0)
    low_agreement: float = Field(ge=0)
    dropped_mentions: float = Field(ge=0)


class ScoutParams(Section):
    SECTION = "scout"
    folds: int = Field(ge=2)
    epochs: int = Field(gt=0)
    weights: ScoutWeights
    seed: int


# A served student (scripts/serve.py, the Endpoint handler) takes at most this many headlines per batch
# (parameters.batch_size): a larger tag.batch_size would fail every request.
MAX_BATCH_SIZE = 256
# The bootstrap holds resamples x test headlines x 4 int64 at once (core/metrics.py: 10,000 x 1,000 headlines is
# 320 MB, ten times that would be 3.2 GB), and a percentile 95% interval needs a few thousand resamples at most.
MAX_RESAMPLES = 10_000


def at_most(limit: int, why: str):
    """A validator of an int field that refuses a value above `limit` with a message saying why."""

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(f"at most {limit:,}: {why}")
        return value

    return check


class Bootstrap(Section):
    resamples: int = Field(gt=0)
    seed: int

    _bounded = field_validator("resamples")(
        at_most(MAX_RESAMPLES, "each resample holds every test headline's counts in memory; a 95% CI needs far fewer")
    )


class EvaluateParams(Section):
    SECTION = "evaluate"
    batch_size: int = Field(gt=0)
    bootstrap: Bootstrap
    cpu_usd_per_hour: float = Field(ge=0)
    top_errors: int = Field(ge=0)
    test_set_dir: str
    extra_test_sets: list[str]
    entity_labels: list[str] = Field(min_length=1)
    ignored_labels: list[str]

    _span_types = model_validator(mode="after")(span_types_apart)
    _bounded = field_validator("batch_size")(
        at_most(
            MAX_BATCH_SIZE, "the students are timed at the batch size they serve at, and a served student takes no more"
        )
    )


class TagParams(Section):
    SECTION = "tag"
    student: Literal["gliner", "spanmarker"]
    form: Literal["export", "fp32"]  # export: the int8 ONNX form (models/<student>_export); fp32: as trained
    batch_size: int = Field(gt=0)
    url: str | None  # None: the student runs in-process; else a served student's URL
    token_env: str | None
    concurrency: ConcurrencyRange
    timeout_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1)
    give_up_after_s: float = Field(gt=0)  # of nothing but timeouts and connection errors: the URL is down

    _bounded = field_validator("batch_size")(
        at_most(MAX_BATCH_SIZE, "a served student refuses a batch larger than that (parameters.batch_size)")
    )

    @field_validator("url")
    @classmethod
    def http_url(cls, value: str | None) -> str | None:
        url = urllib.parse.urlparse(value) if value is not None else None
        if url is not None and (url.scheme not in ("http", "https") or not url.hostname):
            raise ValueError("expected null (in-process) or an http(s) URL with a host, e.g. http://127.0.0.1:8080")
        return value
