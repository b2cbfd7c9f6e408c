"""The pipeline's domain errors. Library code raises them with a one-line message that names the file, row or
param and what is wrong; only a stage's entry (cli.run_stage) turns one into that message and an exit code, so
the same code serves a stage, a script, a test and the HTTP handler (which answers with a status instead)."""

from __future__ import annotations


class PipelineError(Exception):
    """Something the user must fix before the stage can run; the message says what and where."""


class InputError(PipelineError):
    """A file the stage reads is missing or malformed (the message names the file and line)."""


class ParamsError(PipelineError):
    """params.yaml asks for something that cannot run here (the message names the key)."""


class ModelError(PipelineError):
    """A saved or exported model folder, or a base model, cannot be loaded or used."""


class EndpointError(PipelineError):
    """A server the stage needs (the teacher's endpoint, Argilla, a served student) cannot be used."""
