"""Read and validate one stage's section of params.yaml (the file DVC tracks with `params:`).

Every section has a pydantic model below. params.yaml is the one place defaults live: a key missing
there is an error, as is an unknown key (a typo), a wrong type, a number out of range or a value that is
not one of the allowed ones. Each problem is one line naming the full key, the value and what is
allowed, and it comes before any work or any paid call.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PARAMS_FILE = Path("params.yaml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


Fraction = Field(ge=0, le=1)


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


class ExtractiveSettings(Section):
    enabled: bool
    max_words: int = Field(gt=0)
    max_items: int = Field(gt=0)
    free_names: bool
    max_name_chars: int = Field(gt=0)


class Generation(BaseModel):
    model_config = ConfigDict(extra="allow")  # passed to the endpoint as they are (top_p, stop, ...)
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
    expected_headlines_per_s: float = Field(gt=0)


class ClusterSampleParams(Section):
    scorer: Literal["ratio", "token_sort_ratio", "WRatio"]
    threshold: float = Field(ge=0, le=100)
    strip_suffixes: list[str]
    cluster_fraction: float = Fraction
    no_company_fraction: float = Fraction
    invalid_fraction: float = Fraction
    seed: int


class SplitParams(Section):
    ranges: dict[Literal["train", "valid", "test"], RequiredDateRange]

    @field_validator("ranges")
    @classmethod
    def all_splits(cls, value):
        missing = [name for name in ("train", "valid", "test") if name not in value]
        if missing:
            raise ValueError(f"missing range(s) for {missing}")
        return value


class ReviewParams(Section):
    server: Literal["none", "argilla"]
    api_url: str
    api_key_env: str = Field(min_length=1)
    workspace: str
    dataset_prefix: str = Field(min_length=1)
    guidelines_file: str
    label_dir: str
    label_files: list[str]
    entity_labels: list[str] = Field(min_length=1)
    train_reviewed_fraction: float = Fraction
    seed: int
    require_full_review: list[Literal["train", "valid", "test"]]


class ScoutWeights(Section):
    disagreement: float = Field(ge=0)
    invalid: float = Field(ge=0)
    low_agreement: float = Field(ge=0)
    dropped_mentions: float = Field(ge=0)


class ScoutParams(Section):
    folds: int = Field(ge=2)
    epochs: int = Field(gt=0)
    weights: ScoutWeights
    seed: int


class GlinerRecipe(Section):
    base_model: str
    learning_rate: float = Field(gt=0)
    others_learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    revision: str | None  # pins a hub base model to a commit (None: a local encoder)


class SpanMarkerRecipe(Section):
    base_model: str
    entity_label: str
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    revision: str | None


class FinetuneParams(Section):
    recipe: str
    weight_decay: float = Field(ge=0)
    warmup_ratio: float = Fraction
    patience: int = Field(ge=0)
    unreviewed: Literal["keep", "drop"]
    device: Literal["auto", "cpu", "cuda"]
    seed: int

    @model_validator(mode="after")
    def known_recipe(self):
        if self.recipe not in self.recipes:
            raise ValueError(f"recipe {self.recipe!r} is not one of {sorted(self.recipes)}")
        return self


class FinetuneGlinerParams(FinetuneParams):
    recipes: dict[str, GlinerRecipe]
    entity_label: str = Field(min_length=1)
    threshold: float = Field(gt=0, lt=1)
    max_width: int = Field(gt=0)
    others_weight_decay: float = Field(ge=0)
    focal_loss_alpha: float = Field(ge=-1, le=1)  # GLiNER: -1 turns the alpha term off
    focal_loss_gamma: float = Field(ge=0)


class FinetuneSpanMarkerParams(FinetuneParams):
    recipes: dict[str, SpanMarkerRecipe]
    model_max_length: int = Field(gt=0)
    marker_max_length: int = Field(gt=0)
    entity_max_length: int = Field(gt=0)


class Bootstrap(Section):
    resamples: int = Field(gt=0)
    seed: int


class EvaluateParams(Section):
    batch_size: int = Field(gt=0)
    bootstrap: Bootstrap
    cpu_usd_per_hour: float = Field(ge=0)
    top_errors: int = Field(ge=0)
    test_set_dir: str
    extra_test_sets: list[str]
    entity_labels: list[str] = Field(min_length=1)


MODELS: dict[str, type[Section]] = {
    "fetch": FetchParams, "llm_label": LlmLabelParams, "cluster_sample": ClusterSampleParams, "split": SplitParams,
    "scout": ScoutParams, "argilla_review": ReviewParams, "finetune_gliner": FinetuneGlinerParams,
    "finetune_spanmarker": FinetuneSpanMarkerParams, "evaluate": EvaluateParams,
}


def problems(section: str, error: ValidationError) -> list[str]:
    """One line per problem: the full key, the value given and what is allowed."""
    lines = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            lines.append(f"{key}: missing (params.yaml must set it)")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key (a typo? allowed keys are the ones in the shipped params.yaml)")
        else:
            lines.append(f"{key}: {item['input']!r} is not allowed: {message}")
    return lines


def validate(section: str, raw: Any, path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The section checked against its model, as a plain dict with validated values."""
    try:
        model = MODELS[section].model_validate(raw if raw is not None else {})
    except ValidationError as error:
        raise SystemExit(f"{path}: " + f"\n{path}: ".join(problems(section, error))) from None
    return model.model_dump(by_alias=True)


def load_params(section: str, path: Path = PARAMS_FILE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if section not in params:
        raise SystemExit(f"{path}: missing section '{section}'")
    return validate(section, params[section], path) if section in MODELS else params[section]


def require(params: dict[str, Any], key: str, section: str) -> Any:
    """A dotted key of a params section, with an error that names where it should be."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"params.yaml: missing '{section}.{key}'")
        value = value[part]
    return value
