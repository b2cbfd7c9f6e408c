"""A stage's command line and its entry: every stage main parses its paths here and runs under run_stage."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from stages.core.errors import PipelineError


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def stage_parser(description: str, paths: Iterable[str] = (), optional: Iterable[str] = ()) -> argparse.ArgumentParser:
    """A parser with one path option per name: `paths` required (dvc.yaml names them all), `optional` not (for
    the modes a stage also runs in by hand, such as llm_label --plan)."""
    parser = argparse.ArgumentParser(description=description)
    for name in paths:
        parser.add_argument(f"--{name}", type=Path, required=True)
    for name in optional:
        parser.add_argument(f"--{name}", type=Path)
    return parser


def stage_args(description: str, paths: Iterable[str], argv: list[str] | None) -> argparse.Namespace:
    """A stage's command line: every option a required path; logging set up."""
    args = stage_parser(description, paths).parse_args(argv)
    setup_logging()
    return args


def run_stage(main: Callable[[], object]) -> None:
    """The entry of every stage (`if __name__ == "__main__": run_stage(main)`): a domain error ends the process
    with its one-line message and exit code 1; anything else is a bug and keeps its traceback."""
    try:
        main()
    except PipelineError as error:
        raise SystemExit(str(error)) from None
