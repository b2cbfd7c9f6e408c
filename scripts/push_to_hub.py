"""Upload an exported student to the Hugging Face Hub, ready for Inference Endpoints (custom handler).

    HF_HUB_OFFLINE=0 HF_TOKEN=hf_... python -m scripts.push_to_hub <user>/<repo> [models/gliner_export] [--private]
    python -m scripts.push_to_hub <user>/<repo> models/gliner_export --dry-run   # checks and prints, sends nothing

The folder must be an export (the finetune stage writes it: model.onnx, tokenizer, predict settings, handler.py,
code/, requirements.txt, README.md). What is uploaded is a copy whose model card also carries evaluate's test
scores of this model (from --metrics, metrics/metrics.json by default, added to its model-index), which the
finetune stage cannot know when it writes the card; the DVC output itself is left as it is. The repository is
created if missing (create_repo(exist_ok=True)), then the copy goes up in one commit (HfApi.upload_folder).
The equivalent without the test scores: `huggingface-cli upload <user>/<repo> models/gliner_export .`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from stages.serving.layout import CODE_DIR
from stages.students.card import with_test_results
from stages.students.registry import student_name
from stages.students.runtime import EXPORT_FILE
from stages.students.settings import SETTINGS_FILE, read_settings

ROOT = Path(__file__).resolve().parents[1]

REQUIRED = (
    "README.md",
    SETTINGS_FILE,
    EXPORT_FILE,
    "handler.py",
    "requirements.txt",
    f"{CODE_DIR}/stages/serving/handler.py",
)


def check_folder(folder: Path) -> dict:
    """The folder's predict settings, once every file Inference Endpoints needs is there."""
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise SystemExit(
            f"{folder}: not an exported student ready for the hub, missing {missing} (the export "
            f"stage writes models/<student>_export: dvc repro)"
        )
    return read_settings(folder)


def metrics_key(folder: Path, settings: dict) -> str:
    """The folder's entry in metrics/metrics.json: gliner_export for the export of the gliner student."""
    return student_name(settings, folder) + "_export"


def staged_copy(folder: Path, metrics_path: Path | None, scratch: Path) -> tuple[Path, str]:
    """A copy of the folder to upload, its card with the test scores where metrics has them; and a note on that."""
    staging = Path(shutil.copytree(folder, scratch / folder.name))
    key = metrics_key(folder, check_folder(folder))
    if metrics_path is None or not metrics_path.exists():
        return staging, f"no test scores added: {metrics_path} not found"
    metrics = json.loads(metrics_path.read_text())
    if "f1" not in metrics.get(key, {}):
        return staging, f"no test scores added: {metrics_path} has no scores of {key}"
    card = staging / "README.md"
    card.write_text(with_test_results(card.read_text(), metrics[key], metrics["test_records"], metrics["reference"]))
    return staging, f"test scores of {key} from {metrics_path} added to the card (F1 {metrics[key]['f1']})"


def push(
    repo_id: str, folder: Path, metrics_path: Path | None, private: bool, token: str | None, dry_run: bool
) -> dict:
    from huggingface_hub import HfApi

    check_folder(folder)
    with tempfile.TemporaryDirectory() as scratch:
        staging, note = staged_copy(folder, metrics_path, Path(scratch))
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        report = {"repo_id": repo_id, "folder": str(folder), "files": len(files), "note": note, "dry_run": dry_run}
        if dry_run:
            return report | {"file_list": files}
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise SystemExit("HF_HUB_OFFLINE is set (make and the tests set it): run with HF_HUB_OFFLINE=0")
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(staging),
            commit_message=f"Upload {folder.name} (headline-ner export)",
        )
        return report | {"commit": str(getattr(commit, "oid", commit))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo_id", help="<user or org>/<name> on the hub")
    parser.add_argument("folder", type=Path, nargs="?", default=ROOT / "models/gliner_export")
    parser.add_argument(
        "--metrics",
        type=Path,
        default=ROOT / "metrics/metrics.json",
        help="evaluate's metrics, whose test scores of this model go into the uploaded card",
    )
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token-env", default="HF_TOKEN", help="the variable holding the token (never the token)")
    parser.add_argument("--dry-run", action="store_true", help="check and stage the upload, send nothing")
    args = parser.parse_args(argv)
    print(
        json.dumps(
            push(args.repo_id, args.folder, args.metrics, args.private, os.environ.get(args.token_env), args.dry_run)
        )
    )


if __name__ == "__main__":
    main()
