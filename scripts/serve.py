"""Serve a student over HTTP the way Hugging Face Inference Endpoints serves its folder: the same EndpointHandler
(stages/serving/handler.py, shipped in every export as handler.py), so a client written for the endpoint
(huggingface_hub.InferenceClient(base_url=...).token_classification, or the `tag` stage) works against either.

    python -m scripts.serve models/gliner_export --host 127.0.0.1 --port 8080 [--max-batch 64]
    make serve MODEL=models/spanmarker_export PORT=8081

Routes: POST / takes {"inputs": str | [str, ...], "parameters": {...}} and answers what the handler returns (for a
string, a list of {"entity_group", "score", "word", "start", "end"}; for a list, a list of those); GET /health
says the model is loaded, with request counts. A bad body (not JSON, no "inputs", wrong types, more than
--max-batch texts, a text over --max-chars) gets a 4xx JSON {"error": "..."} and the server carries on; a failure
inside the model gets a 500 JSON error and the server carries on too.

Concurrent requests are batched: the first waiting request opens a batch, which takes the requests that arrive
within --batch-wait-ms (and all that queued while the model was busy) up to --max-batch texts; the model runs once
per batch in one executor thread while the event loop keeps reading requests. The int8 export scales activations
per batch, so a borderline span of a request can depend on its batchmates (as in `evaluate`, which predicts in
batches too); one request alone gets exactly what the student's predict gives for its texts.

Why aiohttp: it is already in the stack (the teacher client uses it), maintained, and asyncio-native, so reading
requests, the batching queue and the replies share one event loop with no thread per connection; the model runs
in a single executor thread (ONNX Runtime and torch use the cores themselves). Its overhead is small next to the
model: served over HTTP the int8 GLiNER keeps most of its in-process speed
(benchmarks/teacher_vs_student_cost.py measures both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from stages.serving.handler import MAX_CHARS, MAX_TEXTS, BadRequest, EndpointHandler, Request, entities, parse_request
from stages.students.registry import STUDENTS
from stages.students.settings import read_settings

log = logging.getLogger("headline_ner.serve")


class Batcher:
    """Requests in, one model call per batch of them out (see the module docstring)."""

    def __init__(self, handler: EndpointHandler, max_batch: int, wait_s: float):
        self.handler, self.max_batch, self.wait_s = handler, max_batch, wait_s
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
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.collect()
            texts = [text for request, _ in batch for text in request.texts]
            try:
                found = await loop.run_in_executor(self.executor, self.handler.run, texts, batch[0][0].batch_size)
            except Exception as error:  # a model failure answers these requests with a 500, and the server goes on
                log.exception("model call on %d texts failed", len(texts))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.counts["batches"] += 1
            self.counts["texts"] += len(texts)
            first = 0
            for request, future in batch:
                if not future.done():  # the client may have gone away
                    future.set_result(found[first : first + len(request.texts)])
                first += len(request.texts)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def make_app(
    handler: EndpointHandler, model_dir: Path, max_batch: int, max_chars: int, wait_s: float
) -> web.Application:
    batcher = Batcher(handler, max_batch, wait_s)
    settings = read_settings(model_dir)
    # A body of max_batch texts of max_chars characters, JSON-escaped (up to 6 bytes a character), and some slack.
    max_body = max_batch * (max_chars * 6 + 16) + 4096

    async def predict(http: web.Request) -> web.Response:
        try:
            body = json.loads(await http.read())
        except web.HTTPRequestEntityTooLarge:
            batcher.counts["rejected"] += 1
            return error(
                413, f"body over {max_body} bytes; send at most {max_batch} texts of at most {max_chars} characters"
            )
        except (ValueError, RecursionError) as bad:  # UnicodeDecodeError is a ValueError
            batcher.counts["rejected"] += 1
            return error(400, f"the body is not JSON: {bad}")
        try:
            request = parse_request(body, max_batch, max_chars)
        except BadRequest as bad:
            batcher.counts["rejected"] += 1
            return error(bad.status, str(bad))
        batcher.counts["requests"] += 1
        if not request.texts:
            return web.json_response([])
        try:
            found = await batcher.submit(request)
        except Exception as failure:
            batcher.counts["failed"] += 1
            return error(500, f"the model failed on this batch: {type(failure).__name__}: {failure}")
        results = [entities(text, spans, handler.label, request) for text, spans in zip(request.texts, found)]
        return web.json_response(results[0] if request.single else results)

    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "model": str(model_dir),
                "format": settings.get("format", "saved"),
                "entity_label": handler.label,
                "max_batch": max_batch,
                "max_chars": max_chars,
                **batcher.counts,
            }
        )

    async def start_batcher(app: web.Application):
        task = asyncio.create_task(batcher.run_forever())
        yield
        task.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/", predict)
    app.router.add_get("/health", health)
    app.cleanup_ctx.append(start_batcher)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a saved or exported student (models/gliner_export, ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-batch", type=int, default=MAX_TEXTS, help="texts per request and per model call")
    parser.add_argument("--max-chars", type=int, default=MAX_CHARS, help="characters per text")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="how long a batch waits for more requests")
    parser.add_argument(
        "--student", choices=sorted(STUDENTS), help="the student of a saved (fp32) model; an export names its own"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.max_batch < 1 or args.max_chars < 1 or args.batch_wait_ms < 0:
        parser.error("--max-batch and --max-chars must be at least 1, --batch-wait-ms at least 0")
    if not args.model_dir.is_dir():
        parser.error(f"{args.model_dir}: not a directory (train and export a student first: dvc repro)")
    handler = EndpointHandler(args.model_dir, student=args.student, max_texts=args.max_batch, max_chars=args.max_chars)
    handler.run(["Warm-up headline"])  # the first call builds the runtime's kernels: not the first client's wait
    log.info(
        "serving %s on http://%s:%d (POST /, GET /health), batches of up to %d texts",
        args.model_dir,
        args.host,
        args.port,
        args.max_batch,
    )
    web.run_app(
        make_app(handler, args.model_dir, args.max_batch, args.max_chars, args.batch_wait_ms / 1000),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
