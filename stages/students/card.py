"""The model card of a servable student folder, built as the hub builds them: huggingface_hub.ModelCard with
ModelCardData YAML metadata (library, base model, datasets, license, tags, pipeline tag, and a model-index with the
validation scores of the export) above a markdown body. No timestamps: the same data and params write the same card.

The export stage writes it (README.md of models/<student>_export, the folder to upload) from the training summary
the finetune stage left beside the model. Test scores come from `evaluate`, which runs after export, so the stage
cannot put them in the card; scripts/push_to_hub.py adds them (with_test_results) to the copy it uploads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from stages.core.errors import PipelineError
from stages.students.encoder import LOCAL_MINILM, LOCAL_MINILM_HUB_ID
from stages.students.settings import TrainingSummary

LIBRARIES = ("torch", "transformers", "gliner", "span-marker", "onnxruntime")
LICENSE = "apache-2.0"  # that of every shipped base (all-MiniLM-L6-v2, gliner_medium_news, span-marker-bert-base-orgs)
LIBRARY = {"gliner": "gliner", "spanmarker": "span-marker"}  # library_name, by student
METRICS = ("precision", "recall", "f1")
TASK: dict[str, Any] = {"task_type": "token-classification", "task_name": "Company-name NER (exact character spans)"}
TEST_HEADING = "## Test (human-labelled test split, from evaluate)"


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@dataclass
class CardData:
    training: TrainingSummary
    export_scores: dict  # the export's precision/recall/f1 on the validation headlines the training kept its epoch by
    datasets: list[str] = field(default_factory=list)  # hub ids of the headline source, where it is one
    securities: dict | None = None  # the bundled security master in numbers (securities.master.describe), or None
    versions: dict = field(default_factory=library_versions)


def dataset_type(card: CardData) -> str:
    return card.datasets[0] if card.datasets else "headline-ner"


def metadata(card: CardData) -> ModelCardData:
    training = card.training
    valid_kind = "human-labelled" if training.sizes["valid_human"] else "teacher-labelled"
    results = [
        EvalResult(
            **TASK,
            dataset_type=dataset_type(card),
            dataset_name=f"{valid_kind} validation headlines",
            dataset_split="validation",
            metric_type=m,
            metric_name=f"entity {m}",
            metric_value=round(card.export_scores[m], 4),
        )
        for m in METRICS
    ]
    library = LIBRARY[training.student]
    return ModelCardData(
        model_name=training.title + " (int8 ONNX export)",
        language="en",
        license=LICENSE,
        library_name=library,
        pipeline_tag="token-classification",
        base_model=LOCAL_MINILM_HUB_ID if training.base_model == LOCAL_MINILM else training.base_model,
        datasets=card.datasets or None,
        # endpoints-template: Inference Endpoints' tag for repos with a handler.py
        tags=[
            "ner",
            "token-classification",
            "financial-news",
            "headline-ner",
            library,
            "onnx",
            "int8",
            "endpoints-template",
        ],
        metrics=list(METRICS),
        eval_results=results,
    )


def usage(card: CardData) -> str:
    request = {"inputs": "Apple Shares Up 5% After Earnings Beat", "parameters": {"threshold": 0.5}}
    answer = [{"entity_group": card.training.entity_label, "score": 0.97, "word": "Apple", "start": 0, "end": 5}]
    return (
        "An int8 ONNX graph (`model.onnx`, ONNX Runtime on CPU) with its tokenizer and predict settings, and a "
        "Hugging Face Inference Endpoints custom handler: `handler.py` (the code it runs is in `code/`, the "
        "packages in `requirements.txt`). Deploy this repository as an Inference Endpoint, or serve the folder "
        "locally with headline-ner's `python -m scripts.serve <folder>`; both answer the token-classification "
        f"request\n\n```json\n{json.dumps(request)}\n```\n\nwith\n\n```json\n{json.dumps(answer)}\n```\n\n"
        '(`"inputs"` may be a list of headlines: one list of entities each). In Python, from this folder: '
        '`from handler import EndpointHandler; EndpointHandler(".")({"inputs": "..."})`.'
    )


def securities_section(master: dict | None) -> str:
    if master is None:
        return "## Securities\n\nNo security master is bundled: entities carry no symbol."
    dated = (
        f"its dated rows run from {master['dated_from']} to {master['dated_to']}; the rest are open-ended"
        if master["dated_from"] or master["dated_to"]
        else "no row is dated: every row is open-ended"
    )
    aliases = f", with the accepted aliases of `{master['accepted_aliases']}`" if master.get("accepted_aliases") else ""
    return (
        "## Securities\n\nEach entity also carries `symbol` (null when unknown or ambiguous), `link_score`, "
        "`evidence` and `candidates`, linked point in time against the master bundled in `master/`: "
        f"{master['rows']} rows, {master['symbols']} symbols of {master['securities']} securities, built from "
        f"{', '.join(f'`{f}`' for f in master['files'])}{aliases}; {dated}. Send the headlines' date as "
        '`"parameters": {"date": "YYYY-MM-DD"}`; without it, links are as of the day the request is served.'
    )


def body(card: CardData) -> str:
    training = card.training
    sizes, best, scores = training.sizes, training.best, card.export_scores
    revision = f" at revision `{training.revision}`" if training.revision else ""
    examples = "".join(f"- {e['text']} -> {json.dumps([s['text'] for s in e['spans']])}\n" for e in training.examples)
    validation = (
        f"Best epoch {best['epoch']} of {training.epochs}: precision {best['valid_precision']:.4f}, recall "
        f"{best['valid_recall']:.4f}, F1 {best['valid_f1']:.4f} (exact character spans, on the "
        f"{'human' if sizes['valid_human'] else 'teacher'}-labelled validation headlines). This export, on the same "
        f"headlines: precision {scores['precision']:.4f}, recall {scores['recall']:.4f}, F1 {scores['f1']:.4f}."
    )
    parts = [
        f"# {training.title} (int8 ONNX export)",
        "Company-name NER for financial news headlines, trained by the headline-ner pipeline: an LLM teacher "
        f"labelled the headlines, humans labelled {sizes['train_human']} of the {sizes['train']} training headlines, "
        "and this student learned from the reviewed labels.",
        f"## Model\n\n- Base model: `{training.base_model}`{revision}\n- Entity label: `{training.entity_label}`\n\n"
        + usage(card),
        "## Data\n\n| split | headlines | human-labelled |\n|---|---|---|\n"
        f"| train | {sizes['train']} | {sizes['train_human']} |\n| valid | {sizes['valid']} | {sizes['valid_human']} |"
        + (f"\n\nLabel examples from the training data:\n\n{examples.rstrip()}" if examples else ""),
        "## Validation (the epoch kept)\n\n" + validation + "\n\nTest scores against human labels are not in this "
        "card as the export stage writes it: `evaluate` measures them afterwards (`metrics/metrics.json`), and "
        "`python -m scripts.push_to_hub` adds them to the card it uploads.",
        f"## Parameters\n\n```json\n{json.dumps(training.params, indent=2, sort_keys=True)}\n```",
        securities_section(card.securities),
        "## Library versions\n\n" + "".join(f"- {name} {v}\n" for name, v in card.versions.items()).rstrip(),
        "## Limits\n\nTrained on English headlines. Labels are only as good as the review behind them "
        "(see `metrics/review.json`).",
    ]
    return "\n\n".join(parts) + "\n"


def render(card: CardData) -> str:
    """README.md of a servable student folder."""
    return str(ModelCard(f"---\n{metadata(card).to_yaml()}\n---\n\n{body(card)}"))


def with_test_results(card_text: str, scores: dict, test_records: int, reference: str) -> str:
    """The card with evaluate's test scores of this model (its entry in metrics/metrics.json) added to its
    model-index and as a section: what the upload carries, the stage's own card unchanged."""
    card = ModelCard(card_text)
    if TEST_HEADING in card.text:
        raise PipelineError("the card already has test results")
    assert isinstance(card.data, ModelCardData)  # a ModelCard's data always is (its card_data_class)
    results = card.data.eval_results or []
    dataset = results[0].dataset_type if results else "headline-ner"
    card.data.eval_results = results + [
        EvalResult(
            **TASK,
            dataset_type=dataset,
            dataset_name=f"{reference}-labelled test headlines",
            dataset_split="test",
            metric_type=m,
            metric_name=f"entity {m}",
            metric_value=scores[m],
        )
        for m in METRICS
    ]
    card.text = card.text.rstrip("\n") + (
        f"\n\n{TEST_HEADING}\n\nOn {test_records} test headlines ({reference} labels): precision "
        f"{scores['precision']:.4f}, recall {scores['recall']:.4f}, F1 {scores['f1']:.4f} "
        f"[95% CI {scores['f1_ci_low']:.4f}, {scores['f1_ci_high']:.4f}], "
        f"partial-overlap F1 {scores['partial_f1']:.4f}.\n"
    )
    return str(card)
