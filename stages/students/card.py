"""Model cards of the students, built as the hub builds them: huggingface_hub.ModelCard with ModelCardData YAML
metadata (library, base model, datasets, license, tags, pipeline tag, and a model-index with the validation scores
the finetune stage measured) above a markdown body. No timestamps: the same data and params write the same card.

The finetune stage writes one card for the saved model and one for its export (the folder to upload). Test scores
come from `evaluate`, which runs after finetune (it scores what finetune wrote), so the stage cannot put them in
its cards; scripts/push_to_hub.py adds them (with_test_results) to the copy of the folder it uploads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from stages.students.encoder import LOCAL_MINILM, LOCAL_MINILM_HUB_ID

LIBRARIES = ("torch", "transformers", "gliner", "span-marker", "onnxruntime")
LICENSE = "apache-2.0"  # that of every shipped base (all-MiniLM-L6-v2, gliner_medium_news, span-marker-bert-base-orgs)
LIBRARY = {"gliner_student": "gliner", "spanmarker_student": "span-marker"}  # library_name, by student module
METRICS = ("precision", "recall", "f1")
TASK = {"task_type": "token-classification", "task_name": "Company-name NER (exact character spans)"}
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
    title: str
    module: str  # the stages.common module that loads it
    directory: str
    base_model: str
    revision: str | None
    entity_label: str
    epochs: int
    sizes: dict  # train, train_human, valid, valid_human
    best: dict  # the kept epoch's history row
    params: dict
    examples: list[dict] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # hub ids of the headline source, where it is one
    export_scores: dict | None = None  # the export's precision/recall/f1 on the same validation
    versions: dict = field(default_factory=library_versions)


def dataset_type(card: CardData) -> str:
    return card.datasets[0] if card.datasets else "headline-ner"


def metadata(card: CardData, exported: bool) -> ModelCardData:
    scores = card.export_scores if exported else {m: card.best[f"valid_{m}"] for m in METRICS}
    valid_kind = "human-labelled" if card.sizes["valid_human"] else "teacher-labelled"
    results = (
        [
            EvalResult(
                **TASK,
                dataset_type=dataset_type(card),
                dataset_name=f"{valid_kind} validation headlines",
                dataset_split="validation",
                metric_type=m,
                metric_name=f"entity {m}",
                metric_value=round(scores[m], 4),
            )
            for m in METRICS
        ]
        if scores
        else None
    )
    tags = ["ner", "token-classification", "financial-news", "headline-ner", LIBRARY[card.module]]
    if exported:
        tags += ["onnx", "int8", "endpoints-template"]  # Inference Endpoints' tag for repos with a handler.py
    base = LOCAL_MINILM_HUB_ID if card.base_model == LOCAL_MINILM else card.base_model
    return ModelCardData(
        model_name=card.title + (" (int8 ONNX export)" if exported else ""),
        language="en",
        license=LICENSE,
        library_name=LIBRARY[card.module],
        pipeline_tag="token-classification",
        base_model=base,
        datasets=card.datasets or None,
        tags=tags,
        metrics=list(METRICS),
        eval_results=results,
    )


def usage(card: CardData, exported: bool) -> str:
    if not exported:
        return (
            f"Load it with the pipeline's code: `from stages.common.{card.module} import load; "
            f'predict = load(Path("{card.directory}")); predict(["Apple Shares Up 5%"])` gives character spans '
            "per headline. Its export (int8 ONNX, written beside it by the finetune stage) is the folder to serve and "
            "upload."
        )
    request = {"inputs": "Apple Shares Up 5% After Earnings Beat", "parameters": {"threshold": 0.5}}
    answer = [{"entity_group": card.entity_label, "score": 0.97, "word": "Apple", "start": 0, "end": 5}]
    return (
        "An int8 ONNX graph (`model.onnx`, ONNX Runtime on CPU) with its tokenizer and predict settings, and a "
        "Hugging Face Inference Endpoints custom handler: `handler.py` (the code it runs is in `code/`, the "
        "packages in `requirements.txt`). Deploy this repository as an Inference Endpoint, or serve the folder "
        "locally with headline-ner's `python scripts/serve.py <folder>`; both answer the token-classification "
        f"request\n\n```json\n{json.dumps(request)}\n```\n\nwith\n\n```json\n{json.dumps(answer)}\n```\n\n"
        '(`"inputs"` may be a list of headlines: one list of entities each). In Python, from this folder: '
        '`from handler import EndpointHandler; EndpointHandler(".")({"inputs": "..."})`.'
    )


def body(card: CardData, exported: bool) -> str:
    sizes, best = card.sizes, card.best
    revision = f" at revision `{card.revision}`" if card.revision else ""
    examples = "".join(f"- {e['text']} -> {json.dumps([s['text'] for s in e['spans']])}\n" for e in card.examples)
    validation = (
        f"Best epoch {best['epoch']} of {card.epochs}: precision {best['valid_precision']:.4f}, recall "
        f"{best['valid_recall']:.4f}, F1 {best['valid_f1']:.4f} (exact character spans, on the "
        f"{'human' if sizes['valid_human'] else 'teacher'}-labelled validation headlines)."
    )
    if exported and card.export_scores:
        s = card.export_scores
        validation += (
            f" This export, on the same headlines: precision {s['precision']:.4f}, recall "
            f"{s['recall']:.4f}, F1 {s['f1']:.4f}."
        )
    parts = [
        f"# {card.title}{' (int8 ONNX export)' if exported else ''}",
        "Company-name NER for financial news headlines, trained by the headline-ner pipeline: an LLM teacher "
        f"labelled the headlines, humans labelled {sizes['train_human']} of the {sizes['train']} training headlines, "
        "and this student learned from the reviewed labels.",
        f"## Model\n\n- Base model: `{card.base_model}`{revision}\n- Entity label: `{card.entity_label}`\n\n"
        + usage(card, exported),
        "## Data\n\n| split | headlines | human-labelled |\n|---|---|---|\n"
        f"| train | {sizes['train']} | {sizes['train_human']} |\n| valid | {sizes['valid']} | {sizes['valid_human']} |"
        + (f"\n\nLabel examples from the training data:\n\n{examples.rstrip()}" if examples else ""),
        "## Validation (the epoch kept)\n\n" + validation + "\n\nTest scores against human labels are not in this "
        "card as the finetune stage writes it: `evaluate` measures them afterwards (`metrics/metrics.json`), and "
        "`scripts/push_to_hub.py` adds them to the card it uploads.",
        f"## Parameters\n\n```json\n{json.dumps(card.params, indent=2, sort_keys=True)}\n```",
        "## Library versions\n\n" + "".join(f"- {name} {v}\n" for name, v in card.versions.items()).rstrip(),
        "## Limits\n\nTrained on English headlines. Labels are only as good as the review behind them "
        "(see `metrics/review.json`).",
    ]
    return "\n\n".join(parts) + "\n"


def render(card: CardData, exported: bool = False) -> str:
    """README.md of the saved model (exported=False) or of its export."""
    return str(ModelCard(f"---\n{metadata(card, exported).to_yaml()}\n---\n\n{body(card, exported)}"))


def with_test_results(card_text: str, scores: dict, test_records: int, reference: str) -> str:
    """The card with evaluate's test scores of this model (its entry in metrics/metrics.json) added to its
    model-index and as a section: what the upload carries, the stage's own card unchanged."""
    card = ModelCard(card_text)
    if TEST_HEADING in card.text:
        raise SystemExit("the card already has test results")
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
        f"[95% CI {scores['f1_ci_low']:.4f}, {scores['f1_ci_high']:.4f}], partial-overlap F1 {scores['partial_f1']:.4f}.\n"
    )
    return str(card)


def label_examples(records: list[dict], count: int = 3) -> list[dict]:
    """The first few training records that name a company (records come sorted by id: a fixed choice)."""
    return [{"text": r["text"], "spans": r["spans"]} for r in records if r["spans"]][:count]
