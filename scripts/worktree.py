"""A scratch copy of this working tree, for the DVC runs of tests, benchmarks and the real-headline run: they
work on the project as checked out (tracked files and untracked ones git does not ignore, edits included) and
never touch this checkout's data, models or dvc.lock."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_worktree(destination: Path, leave_out: Callable[[str], bool] = lambda name: False) -> Path:
    """Copy the working tree's files over destination (but those whose repo-relative name leave_out names)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in files:
        if name and (ROOT / name).is_file() and not leave_out(name):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination
