import os
from pathlib import Path

import pytest

from tests.fake_teacher import FakeTeacher

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def fake_teacher():
    server = FakeTeacher().start()
    yield server
    server.stop()
