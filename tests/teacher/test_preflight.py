"""The check before the first paid request (issue 29): one quick GET /v1/models says whether the endpoint can be
reached, takes the token and serves params' model; each failure is one line naming the URL and the param to fix,
in seconds rather than after every headline's retries."""

import socket
import time

import pytest

from stages.core.errors import EndpointError
from stages.core.stage_params import Endpoint
from stages.teacher.endpoint import preflight
from stages.teacher.local_server import free_port
from tests.helpers import FakeTeacher

LLAMA = "meta-llama/Llama-3.1-70B-Instruct"


def endpoint(url: str, model: str = "fake", token_env: str | None = "HF_TOKEN") -> Endpoint:
    return Endpoint(base_url=url, model=model, token_env=token_env, response_format="openai")


def test_a_closed_port_cannot_be_reached_and_says_so_at_once():
    url = f"http://127.0.0.1:{free_port()}/v1"  # a free port nobody listens on
    started = time.monotonic()
    with pytest.raises(EndpointError) as error:
        preflight(endpoint(url), {})
    assert time.monotonic() - started < 2
    assert str(error.value) == (
        f"llm_label: cannot reach {url} (connection refused: nothing listens there); check "
        f"llm_label.endpoint.base_url and that the endpoint is running"
    )


def test_a_server_that_never_answers_times_out_with_one_line():
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(EndpointError, match=rf"cannot reach {url} \(no answer within 0.5 s\)"):
            preflight(endpoint(url), {}, timeout_s=0.5)
        assert time.monotonic() - started < 3


def test_a_refused_token_names_its_variable_never_its_value(fake_teacher):
    fake_teacher.token = "right-token"
    models = f"{fake_teacher.url}/v1/models"
    with pytest.raises(EndpointError) as error:
        preflight(endpoint(fake_teacher.url), {"HF_TOKEN": "wrong-token"})
    assert str(error.value) == (
        f"llm_label: {fake_teacher.url} answered HTTP 401 at {models}: the token in $HF_TOKEN was refused; put a "
        f"valid token for this endpoint in HF_TOKEN (the variable llm_label.endpoint.token_env names)"
    )
    with pytest.raises(EndpointError, match=r"wants a token and \$HF_TOKEN \(llm_label.endpoint.token_env\) is not"):
        preflight(endpoint(fake_teacher.url), {})  # a loopback endpoint may go without: this one may not
    with pytest.raises(EndpointError, match="none was sent; set llm_label.endpoint.token_env to the environment"):
        preflight(endpoint(fake_teacher.url, token_env=None), {"HF_TOKEN": "right-token"})
    token, line = preflight(endpoint(fake_teacher.url), {"HF_TOKEN": "right-token"})
    assert token == "right-token" and "the token in $HF_TOKEN accepted" in line and "right-token" not in line
    assert sum(fake_teacher.requests.values()) == 0 and fake_teacher.models_requests == 4


def test_an_endpoint_that_lists_no_model_passes_and_its_answers_are_checked_instead(fake_teacher):
    fake_teacher.lists_models = False  # /v1/models is a 404
    token, line = preflight(endpoint(fake_teacher.url), {})
    assert token is None
    assert line.startswith(f"llm_label: preflight: {fake_teacher.url} reachable (GET /v1/models: HTTP 404 in ")
    assert line.endswith("no token sent, lists no model: each answer's model is checked instead")


def test_an_endpoint_serving_another_model_is_refused_with_the_existing_line():
    server = FakeTeacher(served_model=LLAMA).start()
    try:
        with pytest.raises(
            EndpointError,
            match=rf"llm_label: {server.url} serves {LLAMA}, but llm_label.endpoint.model is 'tgi'; set it to the "
            r"served id \(it is part of every answer's cache key\)",
        ):
            preflight(endpoint(server.url, model="tgi"), {})
        _, line = preflight(endpoint(server.url + "/v1", model=LLAMA), {})
        assert line.endswith(f"no token sent, none asked for, serves '{LLAMA}'")
        assert server.models_requests == 2 and sum(server.requests.values()) == 0  # one GET each, no chat
    finally:
        server.stop()
