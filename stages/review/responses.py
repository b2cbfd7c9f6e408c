"""What reviewers decided in Argilla: their final responses to a headline resolved into one decision.

argilla_review turns the decisions into labels (with file labels and the teacher's under them); the scout learns
from them between rounds of review.
"""

from __future__ import annotations


def resolve_responses(responses: list[dict]) -> tuple[tuple[str, list[tuple[int, int]]] | None, dict | None]:
    """The decision that counts for a record, (status, spans), and the conflict when reviewers disagree.

    Each reviewer's submitted or discarded response is one vote (drafts do not count): discard, or one set of
    spans. The decision with the most votes wins. A tie goes to a submission over a discard (a label says more),
    then to the span set chosen by the lowest user id, so the choice never depends on the order the server lists
    responses in. The conflict lists every decision with its reviewers, the chosen one first, and says whether
    a majority or the tie-break chose it.
    """
    votes: dict[tuple[str, tuple], list[str]] = {}
    for r in responses:
        if r["status"] in ("submitted", "discarded"):
            spans = (
                tuple(sorted({(s["start"], s["end"]) for s in r["value"] or []})) if r["status"] == "submitted" else ()
            )
            votes.setdefault((r["status"], spans), []).append(r["user_id"])
    if not votes:
        return None, None
    ranked = sorted(votes.items(), key=lambda vote: (-len(vote[1]), vote[0][0] != "submitted", min(vote[1])))
    (status, spans), _ = ranked[0]
    if len(ranked) == 1:
        return (status, list(spans)), None
    conflict = {
        "resolved_by": "tie-break" if len(ranked[1][1]) == len(ranked[0][1]) else "majority",
        "votes": [
            {"status": s, "spans": [list(span) for span in sp], "users": sorted(users)} for (s, sp), users in ranked
        ],
    }
    return (status, list(spans)), conflict


def submitted_labels(snapshot: list[dict], texts: dict[str, str]) -> dict[str, list[dict] | None]:
    """{id: the decided spans ({start, end, text}), or None where the decision is a discard} for the snapshot's
    headlines among `texts` ({id: text}) that have a decision."""
    labels: dict[str, list[dict] | None] = {}
    for row in snapshot:
        decision, _ = resolve_responses(row["responses"])
        if decision is None or row["id"] not in texts:
            continue
        text = texts[row["id"]]
        status, spans = decision
        labels[row["id"]] = (
            [{"start": a, "end": b, "text": text[a:b]} for a, b in spans] if status == "submitted" else None
        )
    return labels
