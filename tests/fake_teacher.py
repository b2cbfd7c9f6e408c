"""A real HTTP server speaking the OpenAI chat-completions protocol, for tests.

It answers like a decent teacher from its own hand-written list of companies (each mention found in the
headline, with the company's name), counts requests per headline, and misbehaves on demand:
`script[headline]` is a list of behaviours consumed one request at a time ("429", "500", "slow", "garbage",
"truncate", "bad_body": a 200 whose body is not JSON, "not_utf8" and "not_utf8_500": bodies that are not
UTF-8, or one of MALFORMED: a 200 completion broken one way); then it answers normally. `plan(headline)`,
when set, gives the script of a headline the script does not name, on its first request. `capacity(answered)`,
when set, is how many requests it serves at once (given how many it has answered so far); beyond that it
answers 429 with Retry-After, like a full endpoint.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter

from aiohttp import web

# company name -> the ways a headline writes it (names of tests/data/headlines.jsonl, common tickers)
COMPANIES = {
    "Apple": ["Apple", "AAPL"],
    "Tesla": ["Tesla", "TSLA"],
    "Nokia": ["Nokia", "NOK"],
    "Visa": ["Visa"],
    "Microsoft": ["Microsoft", "MSFT"],
    "Bank of America": ["Bank of America", "BAC"],
    "Netflix": ["Netflix"],
    "Best Buy": ["Best Buy"],
    "Toyota": ["Toyota"],
    "Honda": ["Honda"],
    "Under Armour": ["Under Armour"],
    "Twitter": ["Twitter", "TWTR"],
    "McDonald's": ["McDonald"],
    "Burger King": ["Burger King"],
    "Tim Hortons": ["Tim Hortons"],
    "News Corp": ["News Corp"],
    "Dell": ["Dell"],
    "EMC": ["EMC"],
    "Bayer": ["Bayer"],
    "Monsanto": ["Monsanto"],
    "Snap": ["Snap"],
    "Amazon": ["Amazon", "AMZN"],
    "Whole Foods": ["Whole Foods"],
    "Facebook": ["Facebook"],
    "Intel": ["Intel", "INTC"],
    "Starbucks": ["Starbucks"],
    "Pfizer": ["Pfizer"],
    "Walmart": ["Walmart"],
    "Saudi Aramco": ["Saudi Aramco"],
    "Boeing": ["Boeing"],
    "Wirecard": ["Wirecard"],
    "Salesforce": ["Salesforce"],
    "Slack": ["Slack"],
    "Nvidia": ["Nvidia", "NVDA"],
    "Oracle": ["Oracle"],
    "IBM": ["IBM"],
    "Target": ["Target"],
}
INDICES = ["Dow Jones", "S&P 500", "Nasdaq"]
INDICES_MARKER = "indices-are-companies"  # a prompt containing this makes the teacher return indices too
NOT_UTF8 = b'\xff\xfe{"choices": []}'
LEFT_OUT = object()
# a 200 chat completion broken one way: (where, what goes there)
MALFORMED = {
    "message_null": (("choices", 0, "message"), None),
    "content_list": (("choices", 0, "message", "content"), [{"type": "text", "text": "Apple"}]),
    "content_number": (("choices", 0, "message", "content"), 42),
    "usage_null": (("usage",), {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}),
    "no_choices": (("choices",), LEFT_OUT),
    "empty_choices": (("choices",), []),
    "choices_not_list": (("choices",), {"index": 0}),
}


def malformed(completion: dict, behaviour: str) -> dict:
    path, value = MALFORMED[behaviour]
    target = completion
    for step in path[:-1]:
        target = target[step]
    if value is LEFT_OUT:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return completion


def teacher_answer(headline: str, system_prompt: str) -> dict:
    forms = [(form, name) for name, written in COMPANIES.items() for form in written]
    forms += [(index, index) for index in INDICES] if INDICES_MARKER in system_prompt else []
    found, taken = [], []
    for form, name in sorted(forms, key=lambda f: -len(f[0])):  # longest first: "Bank of America" over "America"
        for m in re.finditer(r"(?<!\w)" + re.escape(form) + r"(?!\w)", headline, re.IGNORECASE):
            if all(m.end() <= s or m.start() >= e for s, e in taken):
                taken.append((m.start(), m.end()))
                found.append((m.start(), headline[m.start() : m.end()], name))
    return {"companies": [{"mention": mention, "name": name} for _, mention, name in sorted(found)]}


class FakeTeacher:
    def __init__(
        self, retry_after_s: float = 1.0, slow_s: float = 3.0, delay_s: float = 0.0, served_model: str | None = None
    ):
        self.served_model = served_model  # the model it says it serves (/v1/models, answers); None: echo the request's
        self.requests: Counter[str] = Counter()
        self.request_times: dict[str, list[float]] = {}
        self.script: dict[str, list[str]] = {}
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.plan = None
        self.retry_after_s, self.slow_s, self.delay_s = retry_after_s, slow_s, delay_s
        self.capacity = None
        self.in_flight, self.rejected = 0, 0
        self.answered: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        headline = body["messages"][-1]["content"]
        self.requests[headline] += 1
        self.request_times.setdefault(headline, []).append(self._loop.time())
        if self.plan and headline not in self.script:
            self.script[headline] = self.plan(headline)
        behaviour = self.script.get(headline, []).pop(0) if self.script.get(headline) else "ok"
        if self.capacity and self.in_flight >= self.capacity(sum(self.answered.values())):
            behaviour, self.rejected = "429", self.rejected + 1
        self.in_flight += 1
        try:
            return await self._answer(body, headline, behaviour)
        finally:
            self.in_flight -= 1

    async def _answer(self, body: dict, headline: str, behaviour: str) -> web.Response:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if behaviour == "429":
            return web.Response(status=429, text="rate limited", headers={"Retry-After": str(self.retry_after_s)})
        if behaviour == "500":
            return web.Response(status=500, text="boom")
        if behaviour == "bad_body":
            return web.Response(status=200, text="<html>proxy error</html>")
        if behaviour in ("not_utf8", "not_utf8_500"):
            return web.Response(
                status=500 if behaviour.endswith("500") else 200, body=NOT_UTF8, content_type="application/json"
            )
        if behaviour == "slow":
            await asyncio.sleep(self.slow_s)
        content = json.dumps(teacher_answer(headline, body["messages"][0]["content"]))
        finish = "stop"
        self.answered[headline] += 1
        if behaviour == "garbage":
            content = "Sure! The companies are: " + headline
        elif behaviour == "truncate":
            content, finish = content[: len(content) // 2], "length"
        completion = {
            "id": "x",
            "object": "chat.completion",
            "model": self.served_model or body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
        if behaviour in MALFORMED:
            completion = malformed(completion, behaviour)
        return web.json_response(completion)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        listed = [{"id": self.served_model}] if self.served_model else []
        app.router.add_get("/v1/models", lambda r: web.json_response({"object": "list", "data": listed}))
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeTeacher:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
