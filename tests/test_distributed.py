"""Data parallelism (lifecycle.distributed): DDP equals single-process training, failures end cleanly.

The launching tests start real torchrun runs (gloo, 2 CPU processes, the `test` preset, a few steps): each
takes a few seconds, most of it importing torch in three processes.
"""
import json
import os
import random
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.data import get_batch, load_corpus
from lifecycle.distributed import DDPConfig, build_model, global_batch, main, make_batch_fn, parse_args, shard_rows, \
    training_state_bytes
from lifecycle.measure.launch import LaunchError, launch
from lifecycle.train import TrainConfig, batch_generator, load_checkpoint, read_checkpoint_meta, train

WORDS = ("the of and to in that is was he for it with as his on be at by had not are but from or have an they "
         "which one you were her all she there would their we him been has when who will more no if out so").split()


@pytest.fixture(scope="module")
def text_path(tmp_path_factory) -> Path:
    """A small deterministic corpus (~50k characters: enough for the 90/10 split in 4096-token chunks)."""
    rng = random.Random(0)
    parts = []
    while sum(map(len, parts)) < 50_000:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        parts.append(sentence.capitalize() + rng.choice(".,!?") + rng.choice(" \n"))
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("".join(parts))
    return path


def config(text_path, **overrides) -> DDPConfig:
    # A modest learning rate: the attention key biases get a gradient that is exactly 0 in exact arithmetic and
    # ~1e-10 of rounding noise in practice; Adam (eps 1e-8) turns that noise into steps of up to ~1% of the lr,
    # different in each run. With lr 1e-3 over 4 steps that stays well below the 1e-5 tolerance.
    return DDPConfig(**({"text": str(text_path), "max_iters": 4, "batch_size": 8, "block_size": 32,
                         "warmup_iters": 10, "lr": 1e-3, "eval_interval": 2, "eval_iters": 2} | overrides))


def single_process(cfg: DDPConfig, rows: slice | None = None):
    """The reference: one process, the same model init, the same global batches (or only `rows` of them)."""
    corpus = load_corpus(cfg.text)
    model = build_model(cfg, corpus.tokenizer.vocab_size)
    tcfg = cfg.train_config()
    batch_fn = None
    if rows is not None:
        batch_fn = lambda step: tuple(t[rows] for t in global_batch(corpus.train, tcfg, step))  # noqa: E731
    result = train(model, corpus.train, corpus.val, tcfg, device="cpu", progress=False, batch_fn=batch_fn)
    return model, result


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (each run's folder is on its ranks' command lines)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace") and \
                    Path(cmdline.parent, "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


# ---- pure pieces ----

@settings(max_examples=50, deadline=None)
@given(world=st.integers(1, 8), per_rank=st.integers(1, 8))
def test_shards_partition_the_global_batch(world, per_rank):
    batch = world * per_rank
    covered = [i for rank in range(world) for i in range(batch)[shard_rows(batch, rank, world)]]
    assert covered == list(range(batch))  # disjoint, in order, nothing missing


def test_uneven_batch_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="batch_size 10 is not divisible by the world size 4"):
        shard_rows(10, 0, 4)


def test_rank_shards_of_step_k_are_the_single_process_batch_k(text_path):
    corpus = load_corpus(text_path)
    tcfg = TrainConfig(batch_size=6, block_size=16, seed=7)
    fns = [make_batch_fn(corpus.train, tcfg, rank, 3, torch.device("cpu")) for rank in range(3)]
    for step in (0, 1, 5):
        x = torch.cat([fn(step)[0] for fn in fns])
        y = torch.cat([fn(step)[1] for fn in fns])
        # exactly what lifecycle.train.train draws at this step when it runs alone
        ref_x, ref_y = get_batch(corpus.train, 6, 16, batch_generator(tcfg, step))
        assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    assert not torch.equal(fns[0](0)[0], fns[1](0)[0])  # ranks read different rows


def test_config_survives_the_command_line(tmp_path):
    cfg = DDPConfig(preset="cpu", n_layer=2, max_iters=7, lr=1e-3, checkpoint=False, fail_rank=1, mode="time")
    parsed, out = parse_args(cfg.to_args() + ["--out", str(tmp_path)])
    assert parsed == cfg and out == tmp_path


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="mode"):
        DDPConfig(mode="fast")
    with pytest.raises(ValueError, match="batch_size"):
        DDPConfig(batch_size=0)
    with pytest.raises(ValueError, match="nproc"):
        launch(0, DDPConfig())


def test_adam_training_state_is_16_bytes_per_parameter():
    assert sum(training_state_bytes("mixed").values()) == 16
    assert sum(training_state_bytes("fp32").values()) == 16
    with pytest.raises(ValueError, match="precision"):
        training_state_bytes("int8")


@pytest.fixture
def outside_torchrun():
    """No torchrun variables in the environment during the test (setup() fills its own), restored after."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    yield
    for name in names:
        os.environ.pop(name, None)
    os.environ.update(saved)


def test_one_process_without_torchrun(text_path, tmp_path, outside_torchrun):
    """`python -m lifecycle.distributed` alone is a group of one and trains exactly like `train`."""
    cfg = config(text_path, max_iters=2)
    main(cfg.to_args() + ["--out", str(tmp_path)])
    assert not torch.distributed.is_initialized()  # left the group on the way out
    ref, _ = single_process(cfg)
    ddp = load_checkpoint(tmp_path / "ddp")["model"]
    assert max_diff(ref, ddp) < 1e-6


# ---- real torchrun runs: 2 processes, gloo ----

@pytest.fixture(scope="module")
def two_rank_run(text_path, tmp_path_factory):
    cfg = config(text_path)
    return cfg, launch(2, cfg, out=tmp_path_factory.mktemp("ddp2"), stream=False, timeout_s=300)


def test_two_ranks_compute_the_single_process_update(two_rank_run):
    cfg, run = two_rank_run
    assert run.returncode == 0 and run.result["world_size"] == 2 and run.result["backend"] == "gloo"
    ddp = load_checkpoint(run.out / "ddp")["model"]
    ref, ref_result = single_process(cfg)
    assert max_diff(ref, ddp) < 1e-5
    # the same evaluation losses along the way, on the same fixed evaluation batches
    for a, b in zip(run.result["history"], ref_result.history, strict=True):
        assert a["step"] == b["step"] and abs(a["val"] - b["val"]) < 1e-5
    # ...and the comparison has teeth: training moved the weights, and half the batch gives another answer
    assert max_diff(build_model(cfg, ref.config.vocab_size), ddp) > 5e-4
    half, _ = single_process(cfg, rows=slice(0, cfg.batch_size // 2))
    assert max_diff(half, ddp) > 1e-4


def test_rank0_checkpoint_loads_into_the_single_process_model(two_rank_run, text_path):
    cfg, run = two_rank_run
    meta = read_checkpoint_meta(run.out / "ddp")
    assert meta["step"] == cfg.max_iters and meta["has_optimizer"]
    corpus = load_corpus(text_path)
    model = build_model(cfg, corpus.tokenizer.vocab_size)  # a plain GPT, no DDP wrapper, no "module." prefix
    load_checkpoint(run.out / "ddp", model)
    ddp_weights = load_checkpoint(run.out / "ddp")["model"]
    assert max_diff(model, ddp_weights) == 0.0
    assert sorted(p.name for p in run.out.glob("ddp*")) == ["ddp.json", "ddp.safetensors"]  # rank 0 only


def test_failing_rank_fails_the_launch_and_leaves_nothing_running(text_path, tmp_path):
    out = tmp_path / "failing-run"
    with pytest.raises(LaunchError) as info:
        launch(2, config(text_path, max_iters=6, fail_rank=1, fail_step=3), out=out, stream=False, timeout_s=300)
    err = info.value
    assert err.returncode not in (0, None)
    assert err.rank == 1 and "injected failure on rank 1 at step 3" in err.error
    assert "rank 1 failed first" in str(err)
    worker_pids = [int(p) for p in re.findall(r"\[rank \d\] pid (\d+)", "\n".join(err.output))]
    assert len(worker_pids) == 2
    assert not processes_mentioning(str(out))


@pytest.mark.slow
def test_timeout_kills_every_process(text_path, tmp_path):
    out = tmp_path / "slow-run"
    with pytest.raises(LaunchError, match="timed out") as info:
        launch(2, config(text_path, max_iters=10_000, eval_interval=10_000), out=out, stream=False, timeout_s=20)
    assert info.value.returncode is None
    assert not processes_mentioning(str(out))


def test_timing_mode_reports_every_gradient_byte(text_path, tmp_path, outside_torchrun):
    """"time" mode (used by the bench and lesson 02) runs in a group of one and all-reduces all gradients."""
    cfg = config(text_path, mode="time", time_steps=2, time_repeats=1, checkpoint=False)
    main(cfg.to_args() + ["--out", str(tmp_path)])
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["gradient_bytes"] == 4 * result["n_params"]  # fp32, the tied embedding counted once
    assert len(result["samples"]["sync"]) == len(result["samples"]["no_sync"]) == 1
    assert not (tmp_path / "ddp.json").exists()  # checkpoint=False: nothing written


# ---- regression (issue 15): a dead torchrun must not leave its ranks training ----

def _wait_for(predicate, limit_s: float = 120.0) -> bool:
    """Poll `predicate` until it holds (True) or `limit_s` passes (False); a bound on waiting, not a timing check."""
    import time

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _kill_torchrun_once_training(out: Path) -> None:
    """SIGKILL the torchrun of the run in `out` once its ranks have written a checkpoint (so they are training)."""
    import signal

    assert _wait_for(lambda: (out / "ddp.json").exists()), "the run never reached its first checkpoint"
    torchrun = set(processes_mentioning("torch.distributed.run")) & set(processes_mentioning(str(out)))
    assert len(torchrun) == 1
    os.kill(torchrun.pop(), signal.SIGKILL)


def test_ranks_stop_by_themselves_when_torchrun_is_killed(text_path, tmp_path):
    """No launcher to clean up (its kernel died too): each rank notices that its parent is gone and exits."""
    import subprocess
    import sys

    out = tmp_path / "orphaned-run"
    args = config(text_path, max_iters=100_000, eval_interval=2, eval_iters=1).to_args()
    env = os.environ | {"OMP_NUM_THREADS": "1", "LIFECYCLE_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "lifecycle.distributed", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _kill_torchrun_once_training(out)
        proc.wait()
        assert _wait_for(lambda: not processes_mentioning(str(out)), limit_s=30), \
            f"ranks still running after torchrun died: {processes_mentioning(str(out))}"
    finally:
        for pid in processes_mentioning(str(out)):
            os.kill(pid, 9)


def test_launch_fails_and_ends_every_rank_when_torchrun_is_killed(text_path, tmp_path):
    import threading

    out = tmp_path / "killed-run"
    errors = []

    def run():
        try:
            launch(2, config(text_path, max_iters=100_000, eval_interval=2, eval_iters=1), out=out, stream=False,
                   timeout_s=600, threads=1)
        except LaunchError as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    _kill_torchrun_once_training(out)
    thread.join(timeout=120)
    assert not thread.is_alive() and errors and "exited with code" in str(errors[0])
    assert not processes_mentioning(str(out))
