"""The bundled local teacher: a real llama.cpp server with a real small LLM, started and stopped by us."""
import asyncio
import socket
import urllib.parse

import pytest

from stages.common.local_teacher import local_teacher
from stages.common.teacher import AnswerCache, ClientSettings, Prompt, RequestSpec, ask_all
from stages.llm_label import label_row
from tests.conftest import ROOT

HEADLINES = ["Apple Shares Up 5% After Earnings Beat", "Gold Prices Rise As Dollar Weakens"]


@pytest.mark.slow
def test_local_teacher_answers_schema_bound_json_and_stops(tmp_path):
    spec = RequestSpec(model="local-test", prompt=Prompt.load(ROOT / "data/prompts/company_ner.yaml"),
                       response_format="llama_cpp", generation={"temperature": 0.1, "max_tokens": 128, "seed": 0})
    cache = AnswerCache(tmp_path)
    with local_teacher("local-test", threads=2) as url:
        settings = ClientSettings(base_url=url, concurrency=1)
        stats, failed = asyncio.run(ask_all([(spec, h) for h in HEADLINES], cache, settings))
    assert failed == {} and stats.calls == 2
    for headline in HEADLINES:
        answer = cache.get(spec.cache_key(headline))
        row = label_row(headline, answer, None, "all")
        assert answer["usage"]["completion_tokens"] > 0
        assert row["valid"] or answer["finish_reason"] == "length"  # grammar-bound JSON unless cut short
        assert all(headline[s["start"]:s["end"]] == s["text"] for s in row["spans"])
    port = urllib.parse.urlparse(url).port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the server must be stopped after the block"
