"""The HTTP endpoint of the serving engine (`lifecycle.engine`), and a server in a child process.

    python -m lifecycle.serve --model teacher --batching --prefix-cache --response-cache --port 8000

`make_app` serves an `Engine` at `POST /v1/completions` on 127.0.0.1: the engine runs in its own thread (`_Worker`),
request handlers submit to it and stream its tokens back. The endpoint follows the shape of OpenAI's completions
API (prompt, max_tokens, temperature, stream; the answer's choices[0].text and usage), served with Tornado (a
well-kept asynchronous web server, already part of Jupyter); a bad request is answered 400 with what is wrong.
`Server` starts `python -m lifecycle.serve` in a child process as a context manager, so no server outlives its
notebook. The switches (`StackConfig`) and how the techniques compose are described in `lifecycle.engine`.
References: OpenAI API reference, "Completions".
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import torch

from .checks import require_bool, require_int, require_number
from .engine import WEIGHTS, Engine, Job, StackConfig, load_engine
from .generate import Sampling

# ---- the HTTP endpoint ----

class _Worker:
    """Runs the engine in its own thread; request handlers submit to it and receive tokens on the event loop."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop):
        self.engine, self.loop = engine, loop
        self.inbox: queue.Queue = queue.Queue()
        self.listeners: dict[int, asyncio.Queue] = {}
        self.thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self.thread.start()

    def submit(self, prompt: list[int], max_tokens: int, sampling: Sampling, seed: int | None) -> asyncio.Queue:
        """Queue a request; the returned asyncio.Queue receives (new token ids, done) tuples."""
        out: asyncio.Queue = asyncio.Queue()
        self.inbox.put((prompt, max_tokens, sampling, seed, out))
        return out

    def _send(self, out: asyncio.Queue, item) -> None:
        self.loop.call_soon_threadsafe(out.put_nowait, item)

    def _run(self) -> None:
        sent: dict[int, int] = {}
        while True:
            block = self.engine.idle
            while True:  # take everything that has arrived; wait for one when there is nothing to do
                try:
                    prompt, max_tokens, sampling, seed, out = self.inbox.get(block=block, timeout=0.5)
                except queue.Empty:
                    break
                block = False
                try:
                    job = self.engine.submit(prompt, max_tokens, sampling=sampling, seed=seed)
                except ValueError as e:  # checked before submitting, so only a race could land here
                    self._send(out, e)
                    continue
                self.listeners[id(job)] = out
                sent[id(job)] = 0
                if job.done:
                    self._flush(job, sent)
            if not self.engine.idle:
                try:
                    touched = self.engine.step()
                except Exception as e:  # a bug must not leave clients waiting forever: fail their requests, go on
                    for out in self.listeners.values():
                        self._send(out, RuntimeError(f"the engine failed: {type(e).__name__}: {e}"))
                    self.listeners.clear()
                    sent.clear()
                    self.engine.waiting.clear()
                    self.engine.live.clear()
                    if self.engine.slots is not None:
                        self.engine.slots.reset()
                    self.engine.inflight.clear()
                    continue
                for job in touched:
                    self._flush(job, sent)

    def _flush(self, job: Job, sent: dict[int, int]) -> None:
        k = id(job)
        new = job.tokens[sent[k]:]
        sent[k] = len(job.tokens)
        self._send(self.listeners[k], (new, job.done))
        if job.done:
            del self.listeners[k], sent[k]


class BadRequest(ValueError):
    """A request the server refuses with 400; the message says what is wrong and how to fix it."""


def parse_completion_request(body: bytes, tokenizer, engine: Engine) -> dict:
    """The checked fields of a completions request: prompt ids, max_tokens, sampling (a Sampling made from the
    request's temperature), stream, seed."""
    try:
        data = json.loads(body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the request body is not valid JSON ({e}); send e.g. "
                         '{"prompt": "ROMEO:", "max_tokens": 16}') from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object such as {\"prompt\": \"ROMEO:\", \"max_tokens\": 16}")
    known = {"prompt", "max_tokens", "temperature", "stream", "seed", "model"}
    if unknown := sorted(set(data) - known):
        raise BadRequest(f"unknown fields {unknown}; this server reads {sorted(known)}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("'prompt' must be a non-empty string")
    if bad := tokenizer.unknown(prompt):
        raise BadRequest(f"the prompt has characters the model does not know: {bad!r}; it knows only the "
                         f"{tokenizer.vocab_size} characters of its training text")
    max_tokens, temperature = data.get("max_tokens", 16), data.get("temperature", 0.0)
    stream, seed = data.get("stream", False), data.get("seed")
    ids = tokenizer.encode(prompt)
    try:  # every check names the JSON field it refused
        require_int("'max_tokens'", max_tokens, low=1)
        sampling = Sampling(require_number("'temperature'", temperature, low=0, hint="0 = greedy"))
        require_bool("'stream'", stream, hint="JSON true or false")
        require_int("'seed'", seed, optional=True, hint="null: a fresh draw each time")
        engine.check(ids, max_tokens, sampling)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return {"prompt": ids, "max_tokens": max_tokens, "sampling": sampling, "stream": stream, "seed": seed}


def make_app(engine: Engine, tokenizer, model_name: str = "teacher"):
    """A Tornado application serving `engine`: POST /v1/completions, GET /health. Call on the serving event loop."""
    import tornado.iostream
    import tornado.web

    worker = _Worker(engine, asyncio.get_running_loop())

    class Base(tornado.web.RequestHandler):
        def write_error(self, status_code, **kwargs):
            reason = self._reason
            if "exc_info" in kwargs and isinstance(kwargs["exc_info"][1], tornado.web.HTTPError):
                reason = kwargs["exc_info"][1].log_message or reason
            self.finish({"error": {"message": reason, "code": status_code}})

    class Health(Base):
        def get(self):
            self.write({"status": "ok", "model": model_name, "stack": engine.config.label})

    class Completions(Base):
        async def post(self):
            try:
                req = parse_completion_request(self.request.body, tokenizer, engine)
            except BadRequest as e:
                self.set_status(400)
                self.finish({"error": {"message": str(e), "type": "invalid_request_error", "code": 400}})
                return
            out = worker.submit(req["prompt"], req["max_tokens"], req["sampling"], req["seed"])
            rid, created = f"cmpl-{uuid.uuid4().hex[:12]}", int(time.time())
            text, streamed = [], False
            if req["stream"]:
                self.set_header("Content-Type", "text/event-stream")
                self.set_header("Cache-Control", "no-cache")
            while True:
                item = await out.get()
                if isinstance(item, Exception):
                    code = 400 if isinstance(item, ValueError) else 500
                    if not streamed:  # else the status line has gone: the stream just ends without [DONE]
                        self.set_status(code)
                        self.finish({"error": {"message": str(item), "code": code}})
                    return
                new, done = item
                piece = tokenizer.decode(new)
                text.append(piece)
                if req["stream"] and piece:
                    chunk = {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                             "choices": [{"index": 0, "text": piece, "finish_reason": "length" if done else None}]}
                    self.write(f"data: {json.dumps(chunk)}\n\n")
                    try:
                        await self.flush()
                        streamed = True
                    except tornado.iostream.StreamClosedError:
                        return  # the client left; its request still runs to the end in the engine
                if done:
                    break
            if req["stream"]:
                self.write("data: [DONE]\n\n")
                self.finish()
                return
            n_out = sum(len(t) for t in text)
            self.finish({"id": rid, "object": "text_completion", "created": created, "model": model_name,
                         "choices": [{"index": 0, "text": "".join(text), "finish_reason": "length"}],
                         "usage": {"prompt_tokens": len(req["prompt"]), "completion_tokens": n_out,
                                   "total_tokens": len(req["prompt"]) + n_out}})

    return tornado.web.Application([(r"/v1/completions", Completions), (r"/health", Health)])


def _watch_parent() -> None:
    """Exit when stdin closes: the parent that started this server has ended, even without a clean shutdown."""
    try:
        while sys.stdin.buffer.read(1024):
            pass
    finally:
        os._exit(0)


async def _serve_forever(engine: Engine, tokenizer, port: int, model_name: str) -> None:
    app = make_app(engine, tokenizer, model_name)
    server = app.listen(port, address="127.0.0.1")
    actual = next(iter(server._sockets.values())).getsockname()[1]
    print(json.dumps({"listening": f"http://127.0.0.1:{actual}", "port": actual, "stack": engine.config.label}),
          flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m lifecycle.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="teacher", help="a zoo model name, or 'test' (random weights, for tests)")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--batching", action="store_true")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--weights", choices=WEIGHTS, default="fp32")
    p.add_argument("--response-cache", action="store_true")
    p.add_argument("--cache-size", type=int, default=256)
    p.add_argument("--prefix-cache", action="store_true")
    p.add_argument("--speculative", action="store_true")
    p.add_argument("--gamma", type=int, default=4)
    p.add_argument("--system-prompt", default=None, help="the prefix the prefix cache keeps (default: lesson 07's)")
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (used by Server)")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        config = StackConfig(batching=a.batching, max_batch=a.max_batch, weights=a.weights,
                             response_cache=a.response_cache, cache_size=a.cache_size, prefix_cache=a.prefix_cache,
                             speculative=a.speculative, gamma=a.gamma)
    except ValueError as e:
        p.error(str(e))
    engine, tokenizer = load_engine(a.model, config, a.system_prompt)
    logging.getLogger("tornado.access").setLevel(logging.ERROR)  # a 400 is an answer, not a server problem
    if a.watch_stdin:
        threading.Thread(target=_watch_parent, daemon=True).start()
    # `Server.stop` sends SIGTERM: leave at once with code 0 (no state to save; a normal interpreter shutdown could
    # wait on the daemon threads, the one blocked reading stdin among them)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        asyncio.run(_serve_forever(engine, tokenizer, a.port, a.model))
    except KeyboardInterrupt:
        pass


# ---- a server in a child process, as a context manager ----

class Server:
    """`with Server(StackConfig(...)) as s:` starts `python -m lifecycle.serve` on 127.0.0.1 and stops it on leaving
    the block, also when the block raises or is interrupted (Ctrl-C, the notebook's stop button). The child also
    exits by itself when this process ends, so no server outlives its notebook. `s.url` is its address."""

    def __init__(self, config: StackConfig = StackConfig(), model: str = "teacher", system_prompt: str | None = None,
                 startup_timeout: float = 120.0):
        self.config, self.model, self.system_prompt, self.timeout = config, model, system_prompt, startup_timeout
        self.process: subprocess.Popen | None = None
        self.url = ""

    def args(self) -> list[str]:
        c = self.config
        out = [sys.executable, "-m", "lifecycle.serve", "--model", self.model, "--port", "0", "--watch-stdin",
               "--max-batch", str(c.max_batch), "--weights", c.weights, "--cache-size", str(c.cache_size),
               "--gamma", str(c.gamma)]
        out += [flag for on, flag in ((c.batching, "--batching"), (c.response_cache, "--response-cache"),
                                      (c.prefix_cache, "--prefix-cache"), (c.speculative, "--speculative")) if on]
        return out + ([] if self.system_prompt is None else ["--system-prompt", self.system_prompt])

    def start(self) -> "Server":
        self.process = subprocess.Popen(self.args(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        if not line or not line[0].startswith("{"):
            self.stop()
            raise RuntimeError(f"the server did not start within {self.timeout:.0f} s (exit code "
                               f"{self.process.returncode}); run `{' '.join(self.args()[1:])}` to see why")
        self.url = json.loads(line[0])["listening"]
        return self

    def stop(self) -> None:
        """Terminate the child and wait for it (kill it if it does not end within 5 s)."""
        p = self.process
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in (p.stdin, p.stdout):
            if f:
                f.close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    main()
