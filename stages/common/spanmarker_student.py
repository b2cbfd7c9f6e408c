"""The SpanMarker student: build, train, save, load and predict (shared by finetune_spanmarker, evaluate, scripts).

Base model from params: `local-minilm` builds SpanMarker on the offline MiniLM encoder; a hub id or
directory of a SpanMarker checkpoint (e.g. tomaarsen/span-marker-bert-base-orgs with entity_label ORG)
fine-tunes that. Validation F1 comes from our own entity scorer (SpanMarker's seqeval metric needs the
hub). A saved model reloads with `load(directory)`, from any directory it is moved to.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from stages.common.encoder import local_encoder_dir, rewrite_json, unreachable
from stages.common.spans import char_to_token_spans, token_to_char_span, word_tokens
from stages.common.training import fit, quantize_int8, read_settings


def tag_ids(record: dict, label2id: dict[str, int], label: str) -> tuple[list[str], list[int]]:
    """Word tokens and their tag ids, in IOB2 when the model's labels have B-/I- forms, else IO."""
    text = record["text"]
    tokens = word_tokens(text)
    iob = f"B-{label}" in label2id
    tags = [label2id["O"]] * len(tokens)
    for first, last in char_to_token_spans(tokens, record["spans"]):
        for i in range(first, last + 1):
            tags[i] = label2id[(("B-" if i == first else "I-") + label) if iob else label]
    return [text[s:e] for s, e in tokens], tags


def build_model(params: dict):
    from span_marker import SpanMarkerModel

    base = params["base_model"]
    sizes = {k: params[k] for k in ("model_max_length", "marker_max_length", "entity_max_length")}
    encoder = local_encoder_dir(base)
    try:
        if encoder is None:
            return SpanMarkerModel.from_pretrained(base, revision=params.get("revision"), **sizes)
        label = params["entity_label"]
        return SpanMarkerModel.from_pretrained(str(encoder), labels=["O", f"B-{label}", f"I-{label}"], **sizes)
    except OSError as error:
        raise unreachable(base, "finetune_spanmarker", error) from error


ENCODER_DIR = "encoder"  # inside a saved model: the base encoder's config and tokenizer
ENCODER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                 "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "added_tokens.json")


def save(model, directory: Path) -> None:
    """save_pretrained, plus what SpanMarker needs to rebuild a local encoder anywhere: SpanMarker reloads
    its encoder config and tokenizer from the encoder's original path, which only exists on this machine."""
    model.save_pretrained(str(directory))
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
    offsets = [word_tokens(t) for t in texts]
    dataset = Dataset.from_dict({"tokens": [[t[s:e] for s, e in o] for t, o in zip(texts, offsets)]})
    batches = model.predict(dataset, batch_size=batch_size, show_progress_bar=False)
    return [sorted((token_to_char_span(text, tokens, e["word_start_index"], e["word_end_index"] - 1)
                    for e in entities if e["label"] == label), key=lambda s: s["start"])
            for text, tokens, entities in zip(texts, offsets, batches)]


def load(model_dir: Path, int8: bool = False):
    """A saved student and a predict(texts, batch_size) function for it (int8: quantized for CPU serving)."""
    from span_marker import SpanMarkerConfig, SpanMarkerModel

    settings = read_settings(model_dir)
    config = SpanMarkerConfig.from_pretrained(str(model_dir))
    if config.encoder.get("_name_or_path") == ENCODER_DIR:
        config.encoder["_name_or_path"] = str(model_dir.resolve() / ENCODER_DIR)
    model = SpanMarkerModel.from_pretrained(str(model_dir), config=config)
    model.eval()
    if int8:
        quantize_int8(model)
    return model, lambda texts, batch_size=32: predict(model, texts, settings["entity_label"], batch_size)


def zero_shot(params: dict):
    """predict(texts, batch_size) of the recipe's base checkpoint as it is (e.g. ORG for our company)."""
    model = build_model(params)
    model.eval()
    return lambda texts, batch_size=32: predict(model, texts, params["entity_label"], batch_size)


def train(params: dict, train_records: list[dict], valid_records: list[dict], out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from span_marker import Trainer
    from transformers import TrainingArguments

    torch.manual_seed(params["seed"])
    label = params["entity_label"]
    model = build_model(params)
    label2id = model.config.label2id
    tokens, tags = zip(*(tag_ids(r, label2id, label) for r in train_records))

    def make_trainer(args: dict, callbacks: list) -> Trainer:
        dataset = Dataset.from_dict({"tokens": list(tokens), "ner_tags": list(tags)})
        return Trainer(model=model, args=TrainingArguments(**args), train_dataset=dataset, callbacks=callbacks)

    return fit(lambda directory: save(model, directory), make_trainer, lambda texts: predict(model, texts, label), {"entity_label": label},
               valid_records, out_dir, params)

