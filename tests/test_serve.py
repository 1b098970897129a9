"""The serving engine (every switch exact against the teacher alone) and its HTTP endpoint (answers, 4xx, shutdown)."""
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from lifecycle.generate import generate
from lifecycle.loadtest import LoadConfig, make_load, run_load, summarize
from lifecycle.measure.requests import LengthDist
from lifecycle.engine import StackConfig, StreamRequest, load_engine, simulate
from lifecycle.serve import Server

SYSTEM = "be kind. "  # the test model's window is 32 tokens: a short shared prefix
QUESTIONS = [("what?", 5), ("who is it?", 9), ("what?", 5), ("a", 1), ("hello there", 12), ("who is it?", 9),
             ("what?", 5), ("why so sad?", 7)]


def _load(gap: float = 0.001) -> list[StreamRequest]:
    return [StreamRequest(SYSTEM + q, n, gap * i) for i, (q, n) in enumerate(QUESTIONS)]


@pytest.mark.parametrize("config", [
    StackConfig(),
    StackConfig(batching=True, max_batch=3),
    StackConfig(prefix_cache=True),
    StackConfig(response_cache=True, cache_size=2),
    StackConfig(speculative=True, gamma=3),
    StackConfig(speculative=True, gamma=2, response_cache=True, weights="int8"),
    StackConfig(batching=True, max_batch=2, prefix_cache=True, response_cache=True),
    StackConfig(batching=True, max_batch=4, prefix_cache=True, response_cache=True, weights="int4"),
], ids=lambda c: c.label)
def test_every_switch_gives_the_served_models_own_greedy_text(config):
    engine, tok = load_engine("test", config, system_prompt=SYSTEM)
    result = simulate(engine, tok, _load())
    for request, record in zip(_load(), result.records):
        alone = generate(engine.model, tok.encode(request.prompt), request.max_tokens)[0].tolist()
        assert record.tokens == alone
        assert record.arrival <= record.first_token <= record.finish
    s = result.summary()
    assert s["tokens"] == sum(n for _, n in QUESTIONS)
    assert (s["hit_rate"] > 0) == config.response_cache  # "what?" comes three times, long after its first answer


def test_the_fp32_stack_matches_the_naive_server_and_hits_repeats():
    naive = simulate(load_engine("test", StackConfig())[0], load_engine("test", StackConfig())[1], _load(1.0))
    engine, tok = load_engine("test", StackConfig(batching=True, prefix_cache=True, response_cache=True),
                              system_prompt=SYSTEM)
    stack = simulate(engine, tok, _load(1.0))  # a second between arrivals: every repeat finds its answer stored
    assert [r.tokens for r in stack.records] == [r.tokens for r in naive.records]
    assert stack.cached == [False, False, True, False, False, True, True, False]
    assert engine.prefixes.stats.hits == 5  # every computed request reused the system prompt's KV


def test_repeats_in_flight_wait_for_their_twin_instead_of_computing_again():
    engine, tok = load_engine("test", StackConfig(batching=True, max_batch=8, response_cache=True))
    result = simulate(engine, tok, _load(0.0))  # all at once: every repeat arrives while its twin is computing
    assert result.cached == [False, False, True, False, False, True, True, False]
    for request, record in zip(_load(), result.records):
        assert record.tokens == generate(engine.model, tok.encode(request.prompt), request.max_tokens)[0].tolist()
    assert engine.stats.prefill_tokens == sum(len(r.prompt) for r, hit in zip(_load(), result.cached) if not hit)


def test_refused_combinations_say_why():
    with pytest.raises(ValueError, match="speculative decoding inside a continuous batch"):
        StackConfig(batching=True, speculative=True)
    with pytest.raises(ValueError, match="prefix cache is not supported"):
        StackConfig(speculative=True, prefix_cache=True)
    with pytest.raises(ValueError, match="weights must be one of"):
        StackConfig(weights="int3")
    with pytest.raises(ValueError, match="max_batch must be a positive integer"):
        StackConfig(batching=True, max_batch=0)
    engine, tok = load_engine("test", StackConfig())
    with pytest.raises(ValueError, match="context window"):
        engine.submit(tok.encode("a" * 30), 5)


def test_sampling_with_a_seed_is_reproducible_and_not_greedy():
    outs = []
    for config in (StackConfig(), StackConfig(batching=True)):
        engine, tok = load_engine("test", config)
        job = engine.submit(tok.encode("hello"), 12, temperature=1.5, seed=7)
        while not job.done:
            engine.step()
        outs.append(job.tokens)
    engine, tok = load_engine("test", StackConfig())
    job = engine.submit(tok.encode("hello"), 12, temperature=1.5, seed=7)
    while not job.done:
        engine.step()
    assert job.tokens == outs[0]
    assert job.tokens != generate(engine.model, tok.encode("hello"), 12)[0].tolist()


def test_load_is_seeded_zipf_repeated_and_fits_the_window():
    cfg = LoadConfig(n_requests=40, rate=10.0, catalogue_size=5, output_len=LengthDist(2, 30, "loguniform"))
    a, b = make_load(cfg, block_size=384), make_load(cfg, block_size=384)
    assert a == b
    assert len({r.prompt for r in a}) < len(a)  # repeats
    assert all(r.prompt.startswith(cfg.system_prompt) for r in a)
    by_prompt = {}
    for r in a:
        assert by_prompt.setdefault(r.prompt, r.max_tokens) == r.max_tokens  # one length per question
    assert [r.arrival for r in a] == sorted(r.arrival for r in a) and a[0].arrival == 0
    with pytest.raises(ValueError, match="context window"):
        make_load(cfg, block_size=200)


# ---- the HTTP endpoint ----

def _post(url: str, body) -> tuple[int, dict | str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/v1/completions", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if r.headers.get_content_type() == "application/json" else text)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_endpoint_answers_refuses_bad_requests_and_stops():
    config = StackConfig(batching=True, max_batch=4, prefix_cache=True, response_cache=True)
    engine, tok = load_engine("test", config, system_prompt=SYSTEM)  # the same seeded weights as the server's
    prompt = SYSTEM + "hello"
    expected = tok.decode(generate(engine.model, tok.encode(prompt), 6)[0])
    with Server(config, model="test", system_prompt=SYSTEM) as server:
        pid = server.process.pid
        assert server.url.startswith("http://127.0.0.1:")
        status, answer = _post(server.url, {"prompt": prompt, "max_tokens": 6})
        assert status == 200 and answer["choices"][0]["text"] == expected
        assert answer["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": 6, "total_tokens": len(prompt) + 6}
        status, events = _post(server.url, {"prompt": SYSTEM + "why", "max_tokens": 6, "stream": True})
        chunks = [json.loads(line[6:]) for line in events.splitlines() if line.startswith("data: {")]
        assert status == 200 and events.rstrip().endswith("data: [DONE]")
        assert "".join(c["choices"][0]["text"] for c in chunks) == \
            tok.decode(generate(engine.model, tok.encode(SYSTEM + "why"), 6)[0])
        for body, fragment in [(b"{not json", "not valid JSON"),
                               ({"prompt": "hi", "max_tokens": -3}, "max_tokens"),
                               ({"prompt": "HI!", "max_tokens": 3}, "does not know: ['H', 'I']"),
                               ({"prompt": "a" * 40, "max_tokens": 3}, "context window"),
                               ({"prompt": "hi", "max_tokens": 3, "temperature": -1}, "temperature"),
                               ({"prompt": 5}, "'prompt' must be a non-empty string"),
                               ({"prompt": "hi", "best_of": 2}, "unknown fields")]:
            status, answer = _post(server.url, body)
            assert status == 400 and fragment in answer["error"]["message"], (body, answer)
        # the server survived every bad request, and a small load gets through with all answers
        load = _load(0.005)  # (the load generator's questions do not fit this model's 32-token window)
        records = run_load(server.url, load, concurrency=4)
        s = summarize(records)
        assert s["failed"] == 0 and s["tokens"] == sum(r.max_tokens for r in load)
        assert all(0 < r.ttft <= r.latency for r in records)
    assert server.process.returncode == 0 and not _alive(pid)  # stopped cleanly


def test_server_exits_when_its_parent_dies_without_stopping_it():
    code = ("import sys, os; from lifecycle.serve import Server; from lifecycle.engine import StackConfig; "
            "s = Server(StackConfig(), model='test').start(); print(s.process.pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid)
