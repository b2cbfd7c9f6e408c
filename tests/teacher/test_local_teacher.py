"""The bundled local teacher: a real llama.cpp server with a real small LLM, started and stopped by us."""

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from stages.http.answer_cache import AnswerCache
from stages.http.client import ClientSettings
from stages.teacher.endpoint import ask_all
from stages.teacher.labels import label_row
from stages.teacher.local_server import local_teacher
from stages.teacher.request import Extractive, Prompt, RequestSpec
from tests.helpers import ROOT

# Several companies each, so a model left free would list more than one.
HEADLINES = [
    "Apple, Tesla, Visa And Nike Lead Gains After Earnings Beat",
    "AAPL, TSLA And MSFT Report Earnings This Week",
    "Oracle Sues IBM And Intel Over Patent Infringement",
    "Gold Prices Rise As Dollar Weakens",
]


@pytest.mark.slow
def test_local_teacher_obeys_the_per_headline_schema_and_stops(tmp_path):
    extractive = Extractive(max_words=4, max_items=1, free_names=False, max_name_chars=40)
    spec = RequestSpec(
        model="local-test",
        prompt=Prompt.load(ROOT / "data/prompts/company_ner.yaml"),
        response_format="llama_cpp",
        generation={"temperature": 0.7, "seed": 0},
        extractive=extractive,
    )
    cache = AnswerCache(tmp_path)
    with local_teacher("local-test", threads=2) as url:
        settings = ClientSettings(base_url=url, concurrency=1, timeout_s=120, max_attempts=1)
        stats, failed = asyncio.run(ask_all([(spec, h) for h in HEADLINES], cache, settings))
    assert failed == {} and stats.calls == len(HEADLINES)
    for headline in HEADLINES:
        answer = cache.get(spec.cache_key(headline))
        companies = json.loads(answer["content"])["companies"]  # valid JSON of the schema's shape
        allowed = extractive.schema(headline)["properties"]["companies"]["items"]["properties"]["mention"]["enum"]
        assert len(companies) <= 1, answer["content"]  # maxItems is enforced
        assert all(c["mention"] in allowed for c in companies), answer["content"]  # so is the enum
        assert answer["finish_reason"] == "stop"
        row = label_row(headline, answer, None, "all")
        assert row.valid and row.hallucinated == []
        assert all(headline[s["start"] : s["end"]] == s["text"] for s in row.teacher_spans)
    port = urllib.parse.urlparse(url).port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the server must be stopped after the block"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_killing_the_stage_stops_its_server():
    script = (
        "import time\nfrom stages.teacher.local_server import local_teacher\n"
        "with local_teacher('x', threads=1) as url:\n    print(url, flush=True)\n    time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    port = urllib.parse.urlparse(process.stdout.readline().strip()).port
    assert port_open(port)
    process.kill()  # like kill -9 of dvc repro: no `finally` runs in the stage
    process.wait()
    deadline = time.monotonic() + 20
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(port), "the server outlived the stage that started it"
