"""Shared code for the pipeline stages: params, record schema, IO, span alignment, metrics."""
