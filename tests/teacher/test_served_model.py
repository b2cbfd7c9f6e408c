"""The model a server says it serves is the one the cache key names (issue 20): an endpoint serving another model
is refused before any request, and an answer given as another model is filed under that model and stops the run."""

from dataclasses import replace

import pytest

from stages.core.errors import PipelineError
from stages.http.answer_cache import AnswerCache
from stages.teacher.endpoint import ModelMismatch, api_url, refuse_other_model, served_models
from tests.helpers import FakeTeacher, run, spec


@pytest.fixture
def llama_70b():
    server = FakeTeacher(served_model="meta-llama/Llama-3.1-70B-Instruct").start()
    yield server
    server.stop()


def test_urls_with_and_without_v1_reach_the_same_routes():
    for base in ("https://x.cloud", "https://x.cloud/", "https://x.cloud/v1", "https://x.cloud/v1/"):
        assert api_url(base, "chat/completions") == "https://x.cloud/v1/chat/completions"
        assert api_url(base, "models") == "https://x.cloud/v1/models"


def test_an_endpoint_serving_another_model_is_refused_before_any_request(llama_70b):
    assert served_models(llama_70b.url + "/v1", None) == ["meta-llama/Llama-3.1-70B-Instruct"]
    with pytest.raises(
        PipelineError,
        match=r"serves meta-llama/Llama-3.1-70B-Instruct, but llm_label.endpoint.model "
        r"is 'tgi'; set it to the served id",
    ):
        refuse_other_model(llama_70b.url, "tgi", None)
    refuse_other_model(llama_70b.url, "meta-llama/Llama-3.1-70B-Instruct", None)
    assert sum(llama_70b.requests.values()) == 0


def test_an_endpoint_listing_no_model_is_checked_by_its_answers(fake_teacher):
    assert served_models(fake_teacher.url, None) is None  # lists none: nothing to refuse up front
    refuse_other_model(fake_teacher.url, "fake", None)
    assert served_models("http://127.0.0.1:9", None) is None  # nothing listening


def test_an_answer_from_another_model_is_kept_under_that_model_and_stops_the_run(llama_70b, tmp_path):
    cache = AnswerCache(tmp_path)
    with pytest.raises(
        ModelMismatch,
        match="answered as model 'meta-llama/Llama-3.1-70B-Instruct', but llm_label.endpoint.model is 'fake'",
    ):
        run(llama_70b, ["Apple Beats Estimates"], cache, concurrency=1)
    served = replace(spec(), model="meta-llama/Llama-3.1-70B-Instruct")
    assert spec().cache_key("Apple Beats Estimates") not in cache  # nothing filed under the wrong model
    kept = cache.get(served.cache_key("Apple Beats Estimates"))
    assert (kept["model"], kept["served_model"]) == ("meta-llama/Llama-3.1-70B-Instruct",) * 2


def test_answers_record_the_model_that_gave_them(fake_teacher, tmp_path):
    cache = AnswerCache(tmp_path)
    run(fake_teacher, ["Apple Beats Estimates"], cache)
    assert cache.get(spec().cache_key("Apple Beats Estimates"))["served_model"] == "fake"
