"""Serve a student over HTTP the way Hugging Face Inference Endpoints serves its folder: the same EndpointHandler
(stages/serving/handler.py, shipped in every export as handler.py), so a client written for the endpoint
(huggingface_hub.InferenceClient(base_url=...).token_classification, or the `tag` stage) works against either.

    python -m scripts.serve models/gliner_export --host 127.0.0.1 --port 8080 [--max-batch 64]
    make serve MODEL=models/spanmarker_export PORT=8081

Routes: POST / takes {"inputs": str | [str, ...], "parameters": {...}} and answers what the handler returns (for a
string, a list of {"entity_group", "score", "word", "start", "end"}, with "symbol", "link_score", "evidence" and
"candidates" where the folder bundles a security master, as of "parameters": {"date": "YYYY-MM-DD"}; for a list, a
list of those); GET /health says the model is loaded (the folder's name, its student and model version, the master
it links against or null), with request and connection counts.
Every reply carries the headers X-Student and X-Model-Version, so a client (tag) can check which model answered.
A bad body (not JSON, no "inputs", wrong types, a lone surrogate in a text, more than --max-batch texts, a text over
--max-chars) gets a 4xx JSON {"error": "..."} naming the input and the server's limit, and the server carries on; a
failure inside the model gets a 500 JSON error and the server carries on too.

Concurrent requests are batched: the first waiting request opens a batch, which takes the requests that arrive
within --batch-wait-ms (and all that queued while the model was busy) up to --max-batch texts; the model runs once
per batch in one executor thread while the event loop keeps reading requests. If that one call fails, each request
of the batch is asked alone, so only a request whose own texts break the model gets the 500. The int8 export scales
activations per batch, so a borderline span of a request can depend on its batchmates (as in `evaluate`, which
predicts in batches too); one request alone gets exactly what the student's predict gives for its texts.

Abuse is bounded: a connection must send a whole request within --read-timeout-s (and may stay idle between
requests that long), else it is closed (a body that stops arriving gets a 408); at most --max-connections are open
at once. At the cap a new connection takes the slot of the oldest one that has not sent a whole request head
(silent or half-sent: it may never send one) in the EVICTION_GRACE_S since it came, so a flood of such connections
cannot lock out normal clients, who send theirs at once; if there is none, the new connection gets a 503 and is
closed at once. Each kind of
rejection is logged at most once per 10 s, with how many went unlogged, and without a traceback.

Why aiohttp: it is already in the stack (the teacher client uses it), maintained, and asyncio-native, so reading
requests, the batching queue and the replies share one event loop with no thread per connection; the model runs
in a single executor thread (ONNX Runtime and torch use the cores themselves). Its overhead is small next to the
model: served over HTTP the int8 GLiNER keeps most of its in-process speed
(benchmarks/teacher_vs_student_cost.py measures both). It has no connection cap, so the listening socket's protocol
factory (Gate) is ours, and each connection it admits is aiohttp's own request handler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import resource
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from stages.serving.handler import MAX_CHARS, MAX_TEXTS, BadRequest, EndpointHandler, Request, entities, parse_request
from stages.serving.layout import STUDENT_HEADER, VERSION_HEADER
from stages.students.registry import STUDENTS
from stages.students.settings import read_settings

log = logging.getLogger("headline_ner.serve")
FILES_BESIDE_CONNECTIONS = 64  # descriptors the process holds anyway: the model's files, the loop, the executor
# A new connection's time to send its request head before a newer one may take its slot: the few event-loop turns
# aiohttp needs to read it. Longer, and a wave of half-open connections leaves no slot old enough for a normal client
# (benchmarks/serve_abuse.py: 0.25 s refused 20% of normal requests, 0.05 s 3%); none, and one wave evicts them.
EVICTION_GRACE_S = 0.05


@dataclass(frozen=True)
class Limits:
    max_batch: int = MAX_TEXTS
    max_chars: int = MAX_CHARS
    batch_wait_s: float = 0.002
    read_timeout_s: float = 10.0
    max_connections: int = 256


class QuietLog:
    """Trouble a client can cause, and repeat at will, logged at most once per kind per `every_s` (saying how many
    of that kind went unlogged since) and counted for /health: a flood costs a few lines, not a line each."""

    def __init__(self, every_s: float = 10.0):
        self.every_s = every_s
        self.counts: Counter[str] = Counter()
        self.unlogged: Counter[str] = Counter()
        self.logged_at: dict[str, float] = {}

    def note(self, kind: str, message: str, exc_info: BaseException | None = None) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self.logged_at.get(kind, -math.inf) < self.every_s:
            self.unlogged[kind] += 1
            return
        self.logged_at[kind] = now
        unlogged = self.unlogged.pop(kind, 0)
        since = f" ({unlogged} more since the last such line)" if unlogged else ""
        log.warning("%s: %s%s", kind, message, since, exc_info=exc_info)

    def loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's exception handler: a socket error (a failed accept, a reset) is one quiet line."""
        error = context.get("exception")
        if isinstance(error, OSError):
            self.note("socket_error", f"{context['message']}: {error}")
        else:
            loop.default_exception_handler(context)


class Connection(web.RequestHandler):
    """aiohttp's handler of one connection, if the Gate admits it when it is made; else it answers a 503 and closes.
    Admitting in connection_made, one connection at a time, keeps the count exact through a burst of accepts."""

    def __init__(self, gate: Gate, server: web.Server, loop: asyncio.AbstractEventLoop):
        timeout = gate.limits.read_timeout_s
        # keepalive_timeout closes a connection that has no whole request waiting (silent, half-sent or idle);
        # lingering_time bounds the reading of a body left unread after an early reply. No access log: a line a
        # request is noise at this rate (run_app's access_log=None, which RequestHandler's hint does not admit).
        super().__init__(
            server,
            loop=loop,
            keepalive_timeout=timeout,
            lingering_time=timeout,
            access_log=None,  # type: ignore[arg-type]
        )
        self.gate, self.admitted, self.opened = gate, False, time.monotonic()
        self.sent_head, self.tail = False, b""  # whether a whole request head (line and headers) has arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.admitted = self.gate.admit(self)
        if self.admitted:
            super().connection_made(transport)
        else:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(self.gate.busy_reply)
            transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.sent_head:  # seen here, as it arrives, so no newcomer takes the slot while aiohttp parses it
            self.sent_head, self.tail = b"\r\n\r\n" in self.tail + data, data[-3:]
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.admitted:
            self.gate.closed(self)
            super().connection_lost(exc)


class Gate:
    """The listening socket's protocol factory: at most limits.max_connections open (see the module docstring)."""

    def __init__(self, limits: Limits, quiet: QuietLog):
        self.limits, self.quiet = limits, quiet
        self.server: web.Server | None = None  # the runner's, set once it is set up
        self.open: dict[Connection, None] = {}  # oldest first
        body = json.dumps({"error": f"the server is at its --max-connections ({limits.max_connections}); retry"})
        self.busy_reply = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def __call__(self) -> Connection:
        assert self.server is not None, "serve() sets the server before listening"
        return Connection(self, self.server, asyncio.get_running_loop())

    def admit(self, connection: Connection) -> bool:
        """Whether a new connection gets a slot: a free one, or the slot of the oldest connection that has held one
        for EVICTION_GRACE_S without sending a whole request head (younger ones may be about to send theirs)."""
        if len(self.open) >= self.limits.max_connections:
            victim = next((c for c in self.open if not c.sent_head), None)
            if victim is None or time.monotonic() - victim.opened < EVICTION_GRACE_S:
                self.quiet.note("refused", f"a connection over --max-connections {self.limits.max_connections}: 503")
                return False
            del self.open[victim]
            self.quiet.note("evicted", "closed a connection that sent no whole request, to make room for a new one")
            victim.force_close()
        connection.opened = time.monotonic()
        self.open[connection] = None
        return True

    def closed(self, connection: Connection) -> None:
        if connection not in self.open:  # evicted, and noted then
            return
        del self.open[connection]
        if not connection.sent_head and time.monotonic() - connection.opened >= self.limits.read_timeout_s:
            self.quiet.note("timed_out", f"no whole request within --read-timeout-s {self.limits.read_timeout_s}")

    @property
    def counts(self) -> dict[str, int]:
        return {
            "open": len(self.open),
            "max": self.limits.max_connections,
            **{kind: self.quiet.counts[kind] for kind in ("refused", "evicted", "timed_out")},
        }


class Batcher:
    """Requests in, one model call per batch of them out (see the module docstring)."""

    def __init__(self, handler: EndpointHandler, max_batch: int, wait_s: float, quiet: QuietLog):
        self.handler, self.max_batch, self.wait_s, self.quiet = handler, max_batch, wait_s, quiet
        self.queue: asyncio.Queue = asyncio.Queue()
        self.held = None  # taken from the queue but left for the next batch (too big, or another batch size)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.counts = {"requests": 0, "rejected": 0, "failed": 0, "texts": 0, "batches": 0}

    async def submit(self, request: Request) -> list[list[dict]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def collect(self) -> list:
        """The next batch: the oldest waiting request, then whatever queued behind it (after waiting wait_s once
        if nothing had), while the texts fit in max_batch and the model's batch size is the same."""
        first, self.held = self.held or await self.queue.get(), None
        batch, size = [first], len(first[0].texts)
        if size < self.max_batch and self.wait_s and self.queue.empty():
            await asyncio.sleep(self.wait_s)
        while size < self.max_batch and not self.queue.empty():
            item = self.queue.get_nowait()
            if size + len(item[0].texts) > self.max_batch or item[0].batch_size != first[0].batch_size:
                self.held = item
                break
            batch.append(item)
            size += len(item[0].texts)
        return batch

    async def run_forever(self) -> None:
        while True:
            await self.answer(await self.collect())

    async def answer(self, batch: list) -> None:
        """One model call for the batch; if it fails, one for each of its requests, so a request whose texts break
        the model fails alone (a 500) and its batchmates get their answers."""
        batch = [(request, future) for request, future in batch if not future.done()]  # a client may have gone
        if not batch:
            return
        texts = [text for request, _ in batch for text in request.texts]
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(self.executor, self.handler.run, texts, batch[0][0].batch_size)
        except Exception as error:
            if len(batch) > 1:
                self.quiet.note("batch_failed", f"{len(batch)} requests together: {error!r}; asking each alone")
                for item in batch:
                    await self.answer([item])
                return
            self.quiet.note("model_failed", f"a request of {len(texts)} texts: {error!r}", exc_info=error)
            batch[0][1].set_exception(error)
            return
        self.counts["batches"] += 1
        self.counts["texts"] += len(texts)
        first = 0
        for request, future in batch:
            if not future.done():
                future.set_result(found[first : first + len(request.texts)])
            first += len(request.texts)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


GATE = web.AppKey("gate", Gate)


async def read_json(http: web.Request, limits: Limits, max_body: int) -> Any:
    """The request's body as JSON, read within limits.read_timeout_s; BadRequest says what is wrong."""
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            return json.loads(await http.read())
    except TimeoutError:
        raise BadRequest(f"the body did not arrive within {limits.read_timeout_s} s (--read-timeout-s)", 408) from None
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(
            f"body over {max_body} bytes; this server takes at most {limits.max_batch} texts of at most "
            f"{limits.max_chars} characters: set tag.batch_size to at most {limits.max_batch}",
            413,
        ) from None
    except (ValueError, RecursionError) as bad:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"the body is not JSON: {bad}") from None


def make_app(handler: EndpointHandler, model_dir: Path, limits: Limits) -> web.Application:
    quiet = QuietLog()
    batcher = Batcher(handler, limits.max_batch, limits.batch_wait_s, quiet)
    gate = Gate(limits, quiet)
    settings = read_settings(model_dir)
    # A body of max_batch texts of max_chars characters, JSON-escaped (up to 6 bytes a character), and some slack.
    max_body = limits.max_batch * (limits.max_chars * 6 + 16) + 4096

    async def predict(http: web.Request) -> web.Response:
        try:
            request = parse_request(await read_json(http, limits, max_body), limits.max_batch, limits.max_chars)
        except BadRequest as bad:
            batcher.counts["rejected"] += 1
            refused = error(bad.status, str(bad))
            if bad.status == 408:
                quiet.note("timed_out", str(bad))
                refused.force_close()  # the rest of that body is not worth waiting for
            return refused
        batcher.counts["requests"] += 1
        if not request.texts:
            return web.json_response([])
        try:
            found = await batcher.submit(request)
        except Exception as failure:
            batcher.counts["failed"] += 1
            return error(500, f"the model failed on this request: {type(failure).__name__}: {failure}")
        results = [entities(t, spans, handler.label, request, handler.linker) for t, spans in zip(request.texts, found)]
        return web.json_response(results[0] if request.single else results)

    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "model": model_dir.resolve().name,  # not the path: that says how this machine is laid out
                "student": handler.student,
                "model_version": handler.version,
                "format": settings.get("format", "saved"),
                "entity_label": handler.label,
                "master": handler.master,  # the security master entities are linked against, or null: none bundled
                "max_batch": limits.max_batch,
                "max_chars": limits.max_chars,
                **batcher.counts,
                "connections": gate.counts,
            }
        )

    async def provenance(_: web.Request, response: web.StreamResponse) -> None:
        response.headers[STUDENT_HEADER] = handler.student
        response.headers[VERSION_HEADER] = handler.version

    async def start_batcher(app: web.Application):
        task = asyncio.create_task(batcher.run_forever())
        yield
        task.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=max_body)
    app[GATE] = gate
    app.router.add_post("/", predict)
    app.router.add_get("/health", health)
    app.on_response_prepare.append(provenance)
    app.cleanup_ctx.append(start_batcher)
    return app


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve the app through its Gate until SIGINT or SIGTERM."""
    gate = app[GATE]
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(gate.quiet.loop_error)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    gate.server = runner.server
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listener = await loop.create_server(gate, host, port)
    try:
        await stop.wait()
    finally:
        listener.close()
        await runner.cleanup()


def allow_files(connections: int) -> None:
    """Raise this process's open-file limit to what --max-connections needs: past it, accept() fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + FILES_BESIDE_CONNECTIONS
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ValueError(f"--max-connections {connections} needs {needed} open files; this process may open {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a saved or exported student (models/gliner_export, ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-batch", type=int, default=Limits.max_batch, help="texts per request and per model call")
    parser.add_argument("--max-chars", type=int, default=Limits.max_chars, help="characters per text")
    parser.add_argument(
        "--batch-wait-ms", type=float, default=Limits.batch_wait_s * 1000, help="how long a batch waits for more"
    )
    parser.add_argument(
        "--read-timeout-s",
        type=float,
        default=Limits.read_timeout_s,
        help="seconds to send a whole request, and to stay idle between requests",
    )
    parser.add_argument("--max-connections", type=int, default=Limits.max_connections, help="open at once")
    parser.add_argument(
        "--student", choices=sorted(STUDENTS), help="the student of a saved (fp32) model; an export names its own"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if min(args.max_batch, args.max_chars, args.max_connections) < 1 or args.batch_wait_ms < 0:
        parser.error("--max-batch, --max-chars and --max-connections must be at least 1, --batch-wait-ms at least 0")
    if args.read_timeout_s <= 0:
        parser.error("--read-timeout-s must be over 0")
    if not args.model_dir.is_dir():
        parser.error(f"{args.model_dir}: not a directory (train and export a student first: dvc repro)")
    try:
        allow_files(args.max_connections)
    except ValueError as too_many:
        parser.error(str(too_many))
    limits = Limits(
        args.max_batch, args.max_chars, args.batch_wait_ms / 1000, args.read_timeout_s, args.max_connections
    )
    handler = EndpointHandler(args.model_dir, student=args.student, max_texts=args.max_batch, max_chars=args.max_chars)
    handler.run(["Warm-up headline"])  # the first call builds the runtime's kernels: not the first client's wait
    log.info(
        "serving %s (%s, version %s) on http://%s:%d (POST /, GET /health), batches of up to %d texts, "
        "at most %d connections, %g s to send a request",
        args.model_dir,
        handler.student,
        handler.version,
        args.host,
        args.port,
        args.max_batch,
        args.max_connections,
        args.read_timeout_s,
    )
    asyncio.run(serve(make_app(handler, args.model_dir, limits), args.host, args.port))


if __name__ == "__main__":
    main()
