"""The served handler links its entities against the master the export bundled, point in time, and says when it
has none."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import yaml

from stages.core.errors import ModelError
from stages.securities.link import Linker
from stages.securities.master import Master, Security
from stages.securities.settings import LinkParams
from stages.serving.handler import BadRequest, EndpointHandler, Request, entities, parse_request
from stages.serving.layout import MASTER_DIR, model_version, verify_folder

ROOT = Path(__file__).resolve().parents[2]
LINKER = LinkParams.model_validate(yaml.safe_load((ROOT / "params.yaml").read_text())["link"]).linker
MASTER = Master(
    [
        Security(symbol="FB", name="Facebook", valid_to=dt.date(2022, 6, 8), security_id="META", exchange="NASDAQ"),
        Security(symbol="META", name="Meta Platforms", valid_from=dt.date(2022, 6, 9), exchange="NASDAQ"),
        Security(symbol="AAPL", name="Apple", exchange="NASDAQ"),
    ]
)


def test_entities_carry_the_symbol_of_the_requests_date():
    text = "Facebook Shares Up 5%"
    spans = [{"start": 0, "end": 8, "score": 0.9}]
    linker = Linker(MASTER, LINKER)

    def linked(day: str) -> dict:
        request = parse_request({"inputs": text, "parameters": {"date": day}})
        return entities(text, spans, "company", request, linker)[0]

    assert linked("2021-01-04")["symbol"] == "FB"
    assert linked("2023-01-04")["symbol"] == "META"
    assert linked("2023-01-04")["evidence"] == "alias"
    assert linked("2023-01-04")["candidates"][0] == {
        "symbol": "META",
        "name": "Meta Platforms",
        "score": 0.95,
        "evidence": "alias",
    }
    assert "symbol" not in entities(text, spans, "company", Request([text], True))[0]  # no master: no symbol


@pytest.mark.parametrize("date", ["2023-13-01", "yesterday", 20230101])
def test_a_bad_date_is_refused_naming_the_parameter(date):
    with pytest.raises(BadRequest, match="parameters.date must be a date written YYYY-MM-DD"):
        parse_request({"inputs": "x", "parameters": {"date": date}})


@pytest.fixture(scope="module")
def export_with_master(tiny_gliner, tmp_path_factory):
    from stages.serving.package import servable_folder
    from stages.students.registry import STUDENTS

    out = tmp_path_factory.mktemp("with_master") / "gliner_export"
    servable_folder(STUDENTS["gliner"], tiny_gliner / "gliner", out, None, (MASTER, LINKER))
    return out


@pytest.mark.slow
def test_an_export_bundles_its_master_and_the_handler_links_with_it(export_with_master, tiny_gliner):
    assert sorted(p.name for p in (export_with_master / MASTER_DIR).iterdir()) == ["linker.json", "securities.jsonl"]
    # the master is packaging: the model version (tag's cache key) is that of the same export without it
    assert model_version(export_with_master) == model_version(tiny_gliner / "gliner_export")
    handler = EndpointHandler(export_with_master)
    assert handler.master is not None and handler.master["symbols"] == 3 and handler.master["rows"] == 3
    answer = handler({"inputs": ["Apple Shares Up 5% After Earnings Beat"] * 2, "parameters": {"date": "2020-01-02"}})
    for found in answer:
        assert all({"symbol", "link_score", "evidence", "candidates"} <= set(e) for e in found)
    assert EndpointHandler(tiny_gliner / "gliner_export").master is None


@pytest.mark.slow
def test_a_changed_master_in_an_export_is_refused_by_its_manifest(export_with_master, tmp_path):
    copy = tmp_path / "gliner_export"
    shutil.copytree(export_with_master, copy)
    rows = (copy / MASTER_DIR / "securities.jsonl").read_text().splitlines()
    edited = [json.dumps(json.loads(rows[0]) | {"symbol": "AAPL2"}, sort_keys=True)] + rows[1:]
    (copy / MASTER_DIR / "securities.jsonl").write_text("\n".join(edited) + "\n")
    with pytest.raises(ModelError, match="securities.jsonl"):
        verify_folder(copy)
