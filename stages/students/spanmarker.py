"""The SpanMarker student: build, train, save, load and predict (finetune_spanmarker, evaluate, scripts).

Base model from params: `local-minilm` builds SpanMarker on the offline MiniLM encoder; a hub id or
directory of a SpanMarker checkpoint (e.g. tomaarsen/span-marker-bert-base-orgs with entity_label ORG)
fine-tunes that. Validation F1 comes from our own entity scorer (SpanMarker's seqeval metric needs the
hub). A saved model reloads with `load(directory)`, from any directory it is moved to.
`export(model_dir, export_dir)` writes the CPU-serving form (an int8 ONNX graph for ONNX Runtime plus config and
tokenizer); the same `load(export_dir)` serves it, with a batched loop that skips `datasets` and the padding.
The interface every student has is in stages/students/registry.py.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stages.core.spans import char_to_token_spans, token_to_char_span, word_tokens
from stages.students.config import SpanMarkerTraining
from stages.students.encoder import local_encoder_dir, rewrite_json, unreachable
from stages.students.runtime import EXPORT_FILE, is_exported, onnx_session, quantize_int8, quantize_onnx
from stages.students.settings import SETTINGS_FILE, SUMMARY_FILE, read_settings
from stages.students.training import Predictor, Records, TrainingResult, fit

NAME = "spanmarker"  # its registry name (registry.py): model folders name their student by it


def tag_ids(record: Mapping[str, Any], label2id: dict[str, int], label: str) -> tuple[list[str], list[int]]:
    """Word tokens and their tag ids, in IOB2 when the model's labels have B-/I- forms, else IO."""
    text = record["text"]
    tokens = word_tokens(text)
    iob = f"B-{label}" in label2id
    tags = [label2id["O"]] * len(tokens)
    for first, last in char_to_token_spans(tokens, record["spans"]):
        for i in range(first, last + 1):
            tags[i] = label2id[(("B-" if i == first else "I-") + label) if iob else label]
    return [text[s:e] for s, e in tokens], tags


def training_label_ids(config) -> dict[str, int]:
    """The tag ids training data must use: SpanMarker's config.label2id is the reduced one ({O, company}), but a
    model built with B-/I- labels reads training tags by the schemed ids of config.encoder["id2label"]: tagging
    with the reduced ids would make every word a B- tag, so "Bharat Forge" would train as two entities."""
    if config.are_labels_schemed():
        return {label: int(label_id) for label_id, label in config.encoder["id2label"].items()}
    return dict(config.label2id)


def build_model(training: SpanMarkerTraining):
    from span_marker import SpanMarkerModel

    base = training.base_model
    sizes = {
        "model_max_length": training.model_max_length,
        "marker_max_length": training.marker_max_length,
        "entity_max_length": training.entity_max_length,
    }
    encoder = local_encoder_dir(base)
    try:
        if (Path(base) / ENCODER_DIR).is_dir():  # a student saved here (pretrain's first model): as load() reads it
            return SpanMarkerModel.from_pretrained(base, config=_config(Path(base)))
        if encoder is None:
            return SpanMarkerModel.from_pretrained(base, revision=training.revision, **sizes)
        label = training.entity_label
        return SpanMarkerModel.from_pretrained(str(encoder), labels=["O", f"B-{label}", f"I-{label}"], **sizes)
    except OSError as error:
        raise unreachable(base, "finetune_spanmarker", error) from error


ENCODER_DIR = "encoder"  # inside a saved model: the base encoder's config and tokenizer
ENCODER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
)


def save(model, directory: Path) -> None:
    """save_pretrained, plus what SpanMarker needs to rebuild a local encoder anywhere: SpanMarker reloads
    its encoder config and tokenizer from the encoder's original path, which only exists on this machine."""
    model.save_pretrained(str(directory))
    # SpanMarker's own card lists label examples in set order, which differs from run to run (the folder's hash
    # with it); the export stage writes the card a servable folder carries
    (directory / "README.md").unlink(missing_ok=True)
    source = Path(model.config.encoder.get("_name_or_path", ""))
    if not source.is_dir():
        return  # a hub id: resolvable wherever the hub (or its cache) is
    (directory / ENCODER_DIR).mkdir()
    for name in ENCODER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, directory / ENCODER_DIR / name)
    rewrite_json(directory / "config.json", str(source), ENCODER_DIR)


def predict(model, texts: list[str], label: str, batch_size: int = 32) -> list[list[dict]]:
    from datasets import Dataset

    if not texts:
        return []
    offsets = [visible_words(t, model.tokenizer) for t in texts]
    dataset = Dataset.from_dict({"tokens": [[t[s:e] for s, e in o] for t, o in zip(texts, offsets)]})
    batches = model.predict(dataset, batch_size=batch_size, show_progress_bar=False)
    return [
        sorted((_scored_span(text, tokens, e) for e in entities if e["label"] == label), key=lambda s: s["start"])
        for text, tokens, entities in zip(texts, offsets, batches)
    ]


def visible_words(text: str, tokenizer) -> list[tuple[int, int]]:
    """The word tokens of `text` its encoder sees: a one-character word the tokenizer turns into no subword (U+200B,
    U+FEFF, a soft hyphen, a lone combining mark) is left out, since SpanMarker cannot place a span on it (its
    decode raised on one). It had no subword, so the model reads exactly the same input without it."""
    return [(s, e) for s, e in word_tokens(text) if e - s > 1 or not _invisible(tokenizer, text[s])]


@functools.lru_cache(maxsize=65536)
def _invisible(tokenizer, char: str) -> bool:
    return not tokenizer.tokenizer(char, add_special_tokens=False)["input_ids"]


def _scored_span(text: str, tokens: list[tuple[int, int]], entity: dict) -> dict:
    """A SpanMarker entity (word indices, end exclusive) as a character span with its probability."""
    span = token_to_char_span(text, tokens, entity["word_start_index"], entity["word_end_index"] - 1)
    return span | {"score": float(entity["score"])}


def load(model_dir: Path, int8: bool = False, decode: Mapping[str, Any] | None = None) -> Predictor:
    """predict(texts, batch_size) of a saved or exported student (int8: torch dynamic quantization of a saved
    model; an exported one is already int8 and runs on ONNX Runtime). SpanMarker has no decode-only setting, so
    decode (the interface's override of the folder's predict settings) changes nothing here."""
    from span_marker import SpanMarkerModel

    settings = read_settings(model_dir)
    if is_exported(model_dir):
        return load_exported(model_dir, settings["entity_label"])
    model = SpanMarkerModel.from_pretrained(str(model_dir), config=_config(model_dir))
    model.eval()
    if int8:
        quantize_int8(model)
    return lambda texts, batch_size=32: predict(model, texts, settings["entity_label"], batch_size)


def _config(model_dir: Path):
    from span_marker import SpanMarkerConfig

    config = SpanMarkerConfig.from_pretrained(str(model_dir))
    if config.encoder.get("_name_or_path") == ENCODER_DIR:
        config.encoder["_name_or_path"] = str(model_dir.resolve() / ENCODER_DIR)
    return config


def _span_logits_module(model):
    """SpanMarker's forward as one traceable graph: the per-sample loop that picks start/end marker states
    becomes a gather (rows past a sample's marker pairs are garbage and never read)."""
    import torch

    class SpanLogits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.classifier = model.encoder, model.classifier

        def forward(self, input_ids, attention_mask, position_ids, start_marker_indices, num_marker_pairs):
            hidden = self.encoder(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
                position_ids=position_ids,
            )[0]
            length, width = hidden.size(1), hidden.size(2)
            starts = start_marker_indices.unsqueeze(1) + torch.arange(length // 2).unsqueeze(0)
            ends = starts + num_marker_pairs.unsqueeze(1)

            def pick(rows):
                return torch.gather(hidden, 1, rows.clamp(max=length - 1).unsqueeze(-1).expand(-1, -1, width))

            return self.classifier(torch.cat((pick(starts), pick(ends)), dim=-1))

    return SpanLogits().eval()


INPUTS = ("input_ids", "attention_mask", "position_ids", "start_marker_indices", "num_marker_pairs")


def export(model_dir: Path, into: Path) -> None:
    """The CPU-serving form of a saved student into a new directory: SpanMarker's forward traced to ONNX (opset
    17), int8-quantized for ONNX Runtime, with the saved config, tokenizer and encoder files; with the predict
    settings the export stage adds, `load(into)` serves it."""
    import torch
    from span_marker import SpanMarkerModel

    model = SpanMarkerModel.from_pretrained(str(model_dir), config=_config(model_dir))
    model.eval()
    batch = _batches(model.tokenizer, model.data_collator, model.config, [["Apple", "Buys", "Beats"]] * 2, 2)[0][0][0]
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad():
        shutil.copytree(
            model_dir, into, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", SETTINGS_FILE, SUMMARY_FILE)
        )
        graph = Path(scratch) / "fp32.onnx"
        torch.onnx.export(
            _span_logits_module(model),
            tuple(batch[k] for k in INPUTS),
            str(graph),
            input_names=list(INPUTS),
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "position_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length", 2: "length"},
                "start_marker_indices": {0: "batch"},
                "num_marker_pairs": {0: "batch"},
                "logits": {0: "batch", 1: "pairs"},
            },
        )
        quantize_onnx(graph, into / EXPORT_FILE)


def _batches(tokenizer, collator, config, token_lists: list[list[str]], batch_size: int):
    """Model inputs in batches of batch_size, each with the headline index of every row, and the number of words
    of each headline the model sees (after truncation to model_max_length tokens) (a headline with more
    candidate spans than one row holds is spread over several rows, as SpanMarker does), cut to the longest
    row actually used: the rest is padding no token attends to."""
    from span_marker.trainer import Trainer

    encoded = tokenizer({"tokens": token_lists}, return_num_words=True)
    encoded["headline"] = list(range(len(token_lists)))
    rows = Trainer.spread_sample(
        encoded, model_max_length=tokenizer.model_max_length, marker_max_length=config.marker_max_length
    )
    keys = ("input_ids", "num_spans", "start_position_ids", "end_position_ids")
    batches = []
    for first in range(0, len(rows["headline"]), batch_size):
        chunk = range(first, min(first + batch_size, len(rows["headline"])))
        batch = collator([{k: rows[k][i] for k in keys} for i in chunk])
        used = int((batch["start_marker_indices"] + 2 * batch["num_marker_pairs"]).max())
        used += used % 2
        batch = {
            "input_ids": batch["input_ids"][:, :used].long(),
            "position_ids": batch["position_ids"][:, :used].long(),
            "attention_mask": batch["attention_mask"][:, :used, :used],
            "start_marker_indices": batch["start_marker_indices"],
            "num_marker_pairs": batch["num_marker_pairs"],
        }
        batches.append((batch, [rows["headline"][i] for i in chunk]))
    return batches, encoded["num_words"]


def _decode(tokenizer, config, token_lists, num_words, scores, labels, label: str) -> list[list[dict]]:
    """SpanMarker's own decoding: best-scoring non-O spans first, no overlaps; word indices like its predict()."""
    results = []
    for _tokens, words, score, label_ids in zip(token_lists, num_words, scores, labels):
        spans = list(tokenizer.get_all_valid_spans(words, config.entity_max_length))
        taken, entities = [False] * words, []
        for (start, end), probability, label_id in sorted(
            zip(spans, score, label_ids), key=lambda t: t[1], reverse=True
        ):
            if label_id != config.outside_id and not any(taken[start:end]):
                taken[start:end] = [True] * (end - start)
                entities.append(
                    {
                        "label": config.id2label[label_id],
                        "word_start_index": start,
                        "word_end_index": end,
                        "score": probability,
                    }
                )
        results.append(sorted(entities, key=lambda e: e["word_start_index"]))
    return results


def fast_predict(run, tokenizer, collator, config, texts: list[str], label: str, batch_size: int) -> list[list[dict]]:
    """predict() with run(batch) -> logits [rows, pairs, labels] as numpy (an ONNX session or a torch model)."""
    import numpy as np

    if not texts:
        return []
    offsets = [visible_words(t, tokenizer) for t in texts]
    token_lists = [[t[s:e] for s, e in o] for t, o in zip(texts, offsets)]
    scores: list[list[float]] = [[] for _ in texts]  # per headline, per marker pair: the best label's probability
    labels: list[list[int]] = [[] for _ in texts]  # and that label's id
    batches, num_words = _batches(tokenizer, collator, config, token_lists, batch_size)
    for batch, headlines in batches:
        logits = run(batch)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        for row, (headline, pairs) in enumerate(zip(headlines, batch["num_marker_pairs"].tolist())):
            scores[headline].extend(probs[row, :pairs].max(-1).tolist())
            labels[headline].extend(probs[row, :pairs].argmax(-1).tolist())
    entities = _decode(tokenizer, config, token_lists, num_words, scores, labels, label)
    return [
        sorted((_scored_span(text, tokens, e) for e in found if e["label"] == label), key=lambda s: s["start"])
        for text, tokens, found in zip(texts, offsets, entities)
    ]


def load_exported(export_dir: Path, label: str) -> Predictor:
    from span_marker.data_collator import SpanMarkerDataCollator
    from span_marker.tokenizer import SpanMarkerTokenizer

    config = _config(export_dir)
    tokenizer = SpanMarkerTokenizer.from_pretrained(str(export_dir), config=config)
    collator = SpanMarkerDataCollator(tokenizer=tokenizer, marker_max_length=config.marker_max_length)
    session = onnx_session(export_dir / EXPORT_FILE)

    def feeds(batch):
        return {k: batch[k].numpy() for k in INPUTS}

    def run(batch):
        return session.run(["logits"], feeds(batch))[0]

    return lambda texts, batch_size=32: fast_predict(run, tokenizer, collator, config, texts, label, batch_size)


def zero_shot(training: SpanMarkerTraining, decode: Mapping[str, Any] | None = None) -> Predictor:
    """predict(texts, batch_size) of the recipe's base checkpoint as it is (e.g. ORG for our company); decode as
    in load()."""
    model = build_model(training)
    model.eval()
    return lambda texts, batch_size=32: predict(model, texts, training.entity_label, batch_size)


def train(
    training: SpanMarkerTraining, train_records: Records, valid_records: Records, out_dir: Path
) -> TrainingResult:
    import torch
    from datasets import Dataset
    from span_marker import Trainer
    from transformers import TrainingArguments

    torch.manual_seed(training.seed)
    label = training.entity_label
    model = build_model(training)
    label2id = training_label_ids(model.config)
    tokens, tags = zip(*(tag_ids(r, label2id, label) for r in train_records))

    def make_trainer(args: dict, callbacks: list) -> Trainer:
        dataset = Dataset.from_dict({"tokens": list(tokens), "ner_tags": list(tags)})
        return Trainer(model=model, args=TrainingArguments(**args), train_dataset=dataset, callbacks=callbacks)

    return fit(
        lambda directory: save(model, directory),
        make_trainer,
        lambda texts: predict(model, texts, label),
        {"student": NAME, "entity_label": label},
        valid_records,
        out_dir,
        training,
    )
