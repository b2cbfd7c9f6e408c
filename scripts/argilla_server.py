"""A real Argilla server on 127.0.0.1, without Docker: argilla-server in its own venv (.venv-argilla) with
noida-db standing in for Elasticsearch and Redis. Data lives in --data-dir and survives restarts.

  python -m scripts.argilla_server install  # the server's own venv (.venv-argilla)
  python -m scripts.argilla_server up     # install if needed, start, print URL, login and API key
  python -m scripts.argilla_server down   # stop (data is kept)
Only the standard library: it runs before, and beside, the project's own venv.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-argilla"
PACKAGES = ["argilla-server==2.8.0", "click<8.2", "noida-db==0.2.3"]
OWNER = "owner"


def install() -> None:
    if (VENV / ".installed").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin/pip"), "install", "--quiet", *PACKAGES], check=True)
    (VENV / ".installed").touch()


def credentials(data_dir: Path) -> dict:
    """Owner password and API key, made once per data directory (the server stores them)."""
    path = data_dir / "owner.json"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "username": OWNER,
                    "password": secrets.token_urlsafe(12),
                    "api_key": secrets.token_urlsafe(24),
                    "secret": secrets.token_hex(32),
                }
            )
        )
        path.chmod(0o600)
    return json.loads(path.read_text())


def ready(url: str, api_key: str) -> bool:
    request = urllib.request.Request(url + "/api/v1/me", headers={"X-Argilla-Api-Key": api_key})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_env(data_dir: Path, ports: dict, secret: str) -> dict:
    return dict(
        os.environ,
        ARGILLA_HOME_PATH=str(data_dir / "home"),
        ARGILLA_SEARCH_ENGINE="elasticsearch",
        ARGILLA_ELASTICSEARCH=f"http://127.0.0.1:{ports['search']}",
        ARGILLA_REDIS_URL=f"redis://127.0.0.1:{ports['redis']}/0",
        ARGILLA_AUTH_SECRET_KEY=secret,
        HF_HUB_DISABLE_TELEMETRY="1",
        ARGILLA_ENABLE_TELEMETRY="0",
    )


def start(name: str, command: list[str], data_dir: Path, env: dict) -> None:
    log = open(data_dir / f"{name}.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    (data_dir / f"{name}.pid").write_text(str(process.pid))


def wait_for_port(port: int, timeout_s: float) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def up(data_dir: Path, port: int, search_port: int, redis_port: int, timeout_s: float = 120) -> dict:
    install()
    data_dir = data_dir.resolve()
    owner = credentials(data_dir)
    url = f"http://127.0.0.1:{port}"
    if ready(url, owner["api_key"]):
        return owner | {"url": url}
    env = server_env(data_dir, {"search": search_port, "redis": redis_port}, owner["secret"])
    engine = VENV / "lib/python3.11/site-packages/noida_db/noida-db"
    start(
        "noida-db",
        [
            str(engine),
            "start",
            "--only",
            "elasticsearch,redis",
            "--elasticsearch-port",
            str(search_port),
            "--redis-port",
            str(redis_port),
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(data_dir / "db"),
        ],
        data_dir,
        env,
    )
    wait_for_port(search_port, 60)
    python = str(VENV / "bin/python")
    subprocess.run([python, "-m", "argilla_server", "database", "migrate"], env=env, check=True, capture_output=True)
    if not (data_dir / "owner.created").exists():
        subprocess.run(
            [
                python,
                "-m",
                "argilla_server",
                "database",
                "users",
                "create",
                "--first-name",
                "Owner",
                "--username",
                OWNER,
                "--role",
                "owner",
                "--password",
                owner["password"],
                "--api-key",
                owner["api_key"],
                "--workspace",
                "argilla",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        (data_dir / "owner.created").touch()
    start(
        "argilla", [python, "-m", "argilla_server", "start", "--host", "127.0.0.1", "--port", str(port)], data_dir, env
    )
    deadline = time.monotonic() + timeout_s
    while not ready(url, owner["api_key"]):
        if time.monotonic() > deadline:
            down(data_dir)
            raise SystemExit(f"Argilla not ready at {url} after {timeout_s}s; see {data_dir}/argilla.log")
        time.sleep(0.5)
    return owner | {"url": url}


def down(data_dir: Path) -> None:
    for name in ("argilla", "noida-db"):
        pid_file = data_dir.resolve() / f"{name}.pid"
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            pid_file.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["install", "up", "down"])
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".argilla")
    parser.add_argument("--port", type=int, default=6900)
    parser.add_argument("--search-port", type=int, default=9211)
    parser.add_argument("--redis-port", type=int, default=6392)
    args = parser.parse_args()
    if args.action == "install":
        return install()
    if args.action == "down":
        down(args.data_dir)
        print("Argilla stopped (data kept in", args.data_dir, ")")
        return
    server = up(args.data_dir, args.port, args.search_port, args.redis_port)
    print(
        f"Argilla is up at {server['url']}  (login: {server['username']} / {server['password']})\n"
        f"For the pipeline:  export ARGILLA_API_KEY={server['api_key']}\n"
        f"and set argilla_review.server: argilla (api_url: {server['url']}) in params.yaml, and always_changed: true\n"
        f"on the argilla_pull stage in dvc.yaml (so every dvc repro asks the server for new submissions)."
    )


if __name__ == "__main__":
    main()
