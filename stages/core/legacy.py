"""Readers of formats that older runs of the pipeline wrote, in one place. Each says what reads it and when it can
go: once no artefact of that format is kept anywhere (a user's cache, an uploaded model), delete it and its caller
falls back to the error it gives for an unknown format."""

from __future__ import annotations

import hashlib
import json

# Exported folders written before the students were named by registry name (Dec 2026) record the module that
# loaded them ("student_module"); students.registry.student_name looks it up here, never imports it. Can go when
# no such export is served.
STUDENT_MODULES = {
    "stages.common.gliner_student": "gliner",
    "stages.common.spanmarker_student": "spanmarker",
}


def student_of_module(module: str | None) -> str | None:
    return STUDENT_MODULES.get(module or "")


# Those exports predate the manifest of file hashes too (serving.layout.MANIFEST_FILE): serving.layout.verify_folder
# serves them without one, where it refuses a later export that has none. Goes with STUDENT_MODULES.
def predates_manifest(settings: dict) -> bool:
    return "student_module" in settings


# Answers cached before the cache key became the hash of the request body (Nov 2026) are filed under a key made of
# the request spec's fields, the headline and its schema. llm_label finds them by it once and re-files them under
# today's key (teacher.request.RequestSpec.legacy_cache_key, AnswerCache.refile). Can go when no cache written
# before then is in use.
def old_spec_fingerprint(spec_fields: dict) -> str:
    return hashlib.sha256(json.dumps(spec_fields, sort_keys=True).encode()).hexdigest()


def old_answer_key(fingerprint: str, headline: str, headline_schema: str) -> str:
    return hashlib.sha256(f"{fingerprint}\n{headline}\n{headline_schema}".encode()).hexdigest()


# Submission snapshots written before reviews were keyed by headline id carry the split on each row (and may list
# an id once per split); argilla_pull keeps a response's split from them. Can go when no such snapshot is kept.
def split_of_snapshot_row(row: dict) -> str | None:
    return row.get("split")


# llm_label metrics written before the teacher was priced per headline (one answer per headline, no
# headlines_per_s); evaluate reads their speed and price from the answer counts. Can go with those metrics files.
def old_teacher_speed(teacher: dict) -> dict:
    if teacher.get("answers") and teacher.get("endpoint_hours"):
        return {
            "usd_per_million_headlines": round(teacher["estimated_cost_usd"] / teacher["answers"] * 1e6, 4),
            "headlines_per_s": round(teacher["answers"] / max(teacher["endpoint_hours"] * 3600, 1e-9), 2),
        }
    return {}
