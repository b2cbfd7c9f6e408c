"""scripts/serve.py as a client or an attacker meets it (issue 30): every reply says which model answered, one bad
request fails alone, and silent, half-sent or surplus connections are dropped with a few log lines, not one each. On a
tiny real GLiNER export, against the real server process (`Server`) except where a model failure has to be staged."""

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stages.serving.handler import BadRequest, EndpointHandler, parse_request
from stages.serving.layout import model_version
from tests.helpers import ROOT, TINY_RECIPES, Server

POISON = "Headline the staged model failure chokes on"


@pytest.fixture(scope="module")
def gliner_export(labelled_headlines, tmp_path_factory) -> Path:
    """models/gliner_export of a tiny real training run (as test_students trains it)."""
    from stages.serving.package import servable_folder  # here: they import transformers (~3 s)
    from stages.students.registry import STUDENTS, training_params

    training = training_params("gliner", ROOT / "params.yaml").model_copy(update=TINY_RECIPES["gliner"])
    models = tmp_path_factory.mktemp("models")
    STUDENTS["gliner"].train(training, labelled_headlines[:20], labelled_headlines[20:], models / "gliner")
    servable_folder(STUDENTS["gliner"], models / "gliner", models / "gliner_export")
    return models / "gliner_export"


@pytest.fixture
def serve(gliner_export):
    """Start the export behind `python -m scripts.serve` with extra options; every server stops after the test."""
    started = []

    def start(*options: str) -> Server:
        started.append(Server(gliner_export, *options))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def post(server: Server, body: bytes) -> tuple[int, dict, object]:
    """Status, headers and JSON of a POST /, whatever the status."""
    request = urllib.request.Request(server.url + "/", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def concurrently(server: Server, bodies: list[bytes]) -> list[tuple[int, dict, object]]:
    answers: list = [None] * len(bodies)

    def ask(i: int) -> None:
        answers[i] = post(server, bodies[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def connect(server: Server, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(data)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """What the server sent before it closed the connection (it must close it within the socket's timeout)."""
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return got


def test_a_lone_surrogate_is_refused_naming_the_input():
    with pytest.raises(BadRequest, match=r'^"inputs"\[1\] holds a lone surrogate U\+D800 at character 5$') as bad:
        parse_request(json.loads('{"inputs": ["Apple Up", "Evil \\ud800 text"]}'))
    assert bad.value.status == 400
    with pytest.raises(BadRequest, match=r'"inputs"\[0\] holds a lone surrogate U\+DFFF at character 0'):
        parse_request({"inputs": "\udfff"})
    assert parse_request({"inputs": "Apple \U0001f34e Up"}).texts == ["Apple \U0001f34e Up"]  # a real pair is fine


def test_too_many_texts_says_the_servers_limit_and_the_param_to_set():
    with pytest.raises(BadRequest) as bad:
        parse_request({"inputs": ["Apple"] * 80}, max_texts=64)
    assert (bad.value.status, str(bad.value)) == (
        413,
        '"inputs" has 80 texts; this server takes at most 64 per request: set tag.batch_size to at most 64',
    )


@pytest.mark.slow
def test_health_and_every_reply_name_the_student_and_model_version_but_not_the_path(serve, gliner_export):
    server = serve()
    version = model_version(gliner_export)
    assert EndpointHandler(gliner_export).version == version
    health = server.health()
    assert (health["model"], health["student"], health["model_version"]) == ("gliner_export", "gliner", version)
    assert str(gliner_export.parent) not in json.dumps(health)
    bodies = [
        (b'{"inputs": ["Apple Shares Up 5%"]}', 200, None),
        (b'{"inputs": "Evil \\ud800 text"}', 400, None),
        (json.dumps({"inputs": ["Apple"] * 9}).encode(), 413, "this server takes at most 8 per request"),
        (b'{"inputs": "' + b"x" * 3_000_000 + b'"}', 413, "at most 8 texts of at most 300 characters"),
        (b"not json", 400, None),
    ]
    for body, status, message in bodies:
        got, headers, answer = post(server, body)
        assert got == status and (headers["X-Model-Version"], headers["X-Student"]) == (version, "gliner"), body[:40]
        assert message is None or message in answer["error"]


@pytest.mark.slow
def test_a_lone_surrogate_among_concurrent_requests_fails_alone(serve, labelled_headlines):
    server = serve("--batch-wait-ms", "50")
    texts = [r["text"] for r in labelled_headlines[:20]]
    bodies = [json.dumps({"inputs": text}).encode() for text in texts]
    bodies.insert(7, json.dumps({"inputs": "Evil \ud800 text"}).encode())
    answers = concurrently(server, bodies)
    assert [status for status, _, _ in answers] == [200] * 7 + [400] + [200] * 13
    assert answers[7][2] == {"error": '"inputs"[0] holds a lone surrogate U+D800 at character 5'}
    health = server.health()
    assert (health["requests"], health["rejected"], health["failed"], health["texts"]) == (20, 1, 0, 20)


@pytest.mark.slow
def test_a_request_that_breaks_the_model_fails_alone_and_its_batchmates_get_their_answers(
    gliner_export, labelled_headlines
):
    """The merged model call fails (a staged failure on one text: the real ones are being fixed at their root), so
    each request is asked alone: the poisoned one gets the 500, the 20 others what predict gives each alone."""
    from aiohttp.test_utils import TestClient, TestServer

    from scripts.serve import Limits, make_app

    handler = EndpointHandler(gliner_export)
    real, calls = handler.predict, []

    def predict(texts: list[str], batch_size: int = 32) -> list[list[dict]]:
        calls.append(len(texts))
        if POISON in texts:
            raise RuntimeError("staged model failure")
        return real(texts, batch_size)

    handler.predict = predict
    texts = [r["text"] for r in labelled_headlines[:20]]
    texts.insert(7, POISON)

    async def scenario() -> tuple[list, dict]:
        app = make_app(handler, gliner_export, Limits(batch_wait_s=0.5))
        async with TestClient(TestServer(app)) as client:

            async def ask(text: str) -> tuple[int, object]:
                response = await client.post("/", json={"inputs": text})
                return response.status, await response.json()

            answers = await asyncio.gather(*map(ask, texts))
            return answers, await (await client.get("/health")).json()

    answers, health = asyncio.run(scenario())
    assert calls[0] == 21, "the requests must have shared one model call first"
    assert [status for status, _ in answers] == [200] * 7 + [500] + [200] * 13
    assert "staged model failure" in answers[7][1]["error"]
    for text, (_, answer) in zip(texts, answers):
        if text != POISON:
            assert [(e["start"], e["end"]) for e in answer] == [(s["start"], s["end"]) for s in real([text])[0]]
    assert (health["requests"], health["failed"], health["texts"], health["batches"]) == (21, 1, 20, 20)


@pytest.mark.slow
def test_silent_and_half_sent_connections_are_dropped_after_the_read_timeout(serve):
    server = serve("--read-timeout-s", "1")
    started = time.monotonic()
    silent, half_line = connect(server), connect(server, b"POST / HT")
    half_body = connect(server, b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inputs')
    assert post(server, b'{"inputs": "Apple Shares Up"}')[0] == 200  # meanwhile, normal clients are answered
    assert until_closed(silent) == b"" and until_closed(half_line) == b""
    assert 0.9 < time.monotonic() - started < 5
    assert until_closed(half_body).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 8
    assert server.health()["connections"]["timed_out"] == 3


@pytest.mark.slow
def test_over_the_connection_cap_a_silent_connection_makes_room_else_the_newcomer_gets_503(serve):
    server = serve("--max-connections", "4", "--read-timeout-s", "30")
    served = [connect(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") for _ in range(4)]
    for sock in served:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # each sent a whole request: none loses its slot
    started = time.monotonic()
    assert until_closed(connect(server)).startswith(b"HTTP/1.1 503")
    assert time.monotonic() - started < 2, "a connection over the cap is closed at once"
    for sock in served:
        sock.close()

    half_open = [connect(server, b"POST / HT") for _ in range(4)]
    time.sleep(1.5)  # past their grace: a newcomer may take their slots
    assert post(server, b'{"inputs": "Apple Shares Up"}')[0] == 200
    assert until_closed(half_open[0]) == b"", "the oldest half-open connection made room"
    connections = server.health()["connections"]
    assert (connections["refused"], connections["max"]) == (1, 4) and connections["evicted"] >= 1
    for sock in half_open[1:]:
        sock.close()


@pytest.mark.slow
def test_a_flood_of_bad_connections_costs_a_few_log_lines_and_no_traceback(serve):
    server = serve("--max-connections", "8", "--read-timeout-s", "1")
    flood = [connect(server, b"POST / HT") for _ in range(200)]
    time.sleep(1.2)  # past the grace of the last admitted (and their read timeout)
    assert post(server, b'{"inputs": "Apple Shares Up"}')[0] == 200
    time.sleep(1)
    for sock in flood:
        sock.close()
    connections = server.health()["connections"]
    assert connections["refused"] + connections["evicted"] + connections["timed_out"] >= 190
    server.stop()
    log = server.process.stdout.read().decode()
    assert "Traceback" not in log
    assert 1 <= sum(kind in log for kind in ("refused:", "evicted:", "timed_out:")) <= 3
    assert len(log.splitlines()) < 10, log
