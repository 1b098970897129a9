import json

import pytest
import torch

from lifecycle.model import GPT, preset
from lifecycle.train import CheckpointError, TrainConfig, batch_shape, checkpoint_files, load_checkpoint, lr_at, save_checkpoint, train


def small_cfg(**kw):
    base = dict(max_iters=30, batch_size=8, block_size=32, lr=3e-3, min_lr=3e-4, warmup_iters=5,
                eval_interval=10, eval_iters=2, seed=7)
    return TrainConfig(**(base | kw))


def fresh_model(corpus, seed=0):
    torch.manual_seed(seed)
    return GPT(preset("test", vocab_size=corpus.tokenizer.vocab_size))


def run(corpus, cfg, **kw):
    model = fresh_model(corpus)
    result = train(model, corpus.train, corpus.val, cfg, device="cpu", progress=False, **kw)
    return model, result


def test_loss_decreases_on_a_tiny_run(small_corpus):
    _, result = run(small_corpus, small_cfg(max_iters=60))
    first, last = result.history[0], result.history[-1]
    assert last["val"] < first["val"] - 0.3
    assert result.tokens == 60 * 8 * 32 and result.flops > 0 and result.tokens_per_s > 0


def test_same_seed_same_losses(small_corpus):
    _, a = run(small_corpus, small_cfg())
    _, b = run(small_corpus, small_cfg())
    assert [r["val"] for r in a.history] == [r["val"] for r in b.history]
    _, c = run(small_corpus, small_cfg(seed=8))
    assert [r["val"] for r in a.history] != [r["val"] for r in c.history]


def test_resume_continues_exactly(small_corpus, tmp_path):
    ckpt = tmp_path / "run"
    straight, _ = run(small_corpus, small_cfg())

    def crash(row):  # the run dies right after its step-20 checkpoint
        if row["step"] == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(small_corpus, small_cfg(), checkpoint=ckpt, callback=crash)
    assert json.loads(ckpt.with_suffix(".json").read_text())["step"] == 20
    resumed = fresh_model(small_corpus, seed=99)  # different init: everything must come from the checkpoint
    result = train(resumed, small_corpus.train, small_corpus.val, small_cfg(), device="cpu", progress=False,
                   checkpoint=ckpt, resume=True)
    assert result.steps == 10
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_lr_schedule_warms_up_then_decays():
    cfg = small_cfg(max_iters=100, warmup_iters=10)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(cfg.lr)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(cfg.min_lr, rel=1e-2)


def test_sequence_length_warmup_keeps_tokens_per_step():
    cfg = small_cfg(max_iters=10, short_block_size=8, short_fraction=0.5)
    assert batch_shape(0, cfg, 32) == (32, 8) and batch_shape(9, cfg, 32) == (8, 32)


def test_checkpoint_round_trip(small_corpus, tmp_path):
    model, _ = run(small_corpus, small_cfg(max_iters=10))
    save_checkpoint(tmp_path / "m", model, step=10)
    loaded = load_checkpoint(tmp_path / "m")["model"]
    x = torch.randint(0, small_corpus.tokenizer.vocab_size, (2, 16))
    assert torch.equal(model(x)[0], loaded(x)[0])
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_truncated_checkpoint_is_refused(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "m", tiny_model)
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "m")


def test_mismatched_checkpoint_is_refused(tiny_model, tmp_path):
    save_checkpoint(tmp_path / "m", tiny_model)
    other = GPT(preset("test", n_layer=3))
    with pytest.raises(CheckpointError, match="different model"):
        load_checkpoint(tmp_path / "m", other)


def test_missing_checkpoint_and_missing_optimizer_state(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "nothing")
    save_checkpoint(tmp_path / "m", tiny_model)
    opt = torch.optim.AdamW(tiny_model.parameters())
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(tmp_path / "m", tiny_model, opt)


def test_checkpoint_files_are_written_atomically(tiny_model, tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "m", tiny_model, step=1)
    before = (tmp_path / "m.safetensors").read_bytes()
    import lifecycle.train as t

    def boom(tensors, path, **kw):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(t, "save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "m", tiny_model, step=2)
    assert (tmp_path / "m.safetensors").read_bytes() == before  # the old checkpoint is intact
    assert load_checkpoint(tmp_path / "m")["step"] == 1
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("bad", [dict(max_iters=0), dict(lr=1e-3, min_lr=1e-2), dict(precision="fp8"),
                                 dict(short_fraction=1.0), dict(grad_clip=float("nan")),
                                 dict(grad_clip=float("inf")), dict(grad_clip=-1.0)])
def test_bad_train_configs_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


# --- regression tests for faults found by fault injection (issue 15) ----------------------------------------------

def test_dotted_checkpoint_names_do_not_collide(small_corpus, tmp_path):
    a, b = fresh_model(small_corpus, seed=1), fresh_model(small_corpus, seed=2)
    save_checkpoint(tmp_path / "run.v1", a, step=1)
    save_checkpoint(tmp_path / "run.v2", b, step=2)
    assert load_checkpoint(tmp_path / "run.v1")["step"] == 1
    loaded = load_checkpoint(tmp_path / "run.v1")["model"]
    assert torch.equal(loaded.transformer.wte.weight, a.transformer.wte.weight)
    assert {p.name for p in tmp_path.glob("run*")} == {"run.v1.safetensors", "run.v1.json", "run.v2.safetensors",
                                                    "run.v2.json"}


def test_resume_of_a_dotted_checkpoint_continues(small_corpus, tmp_path):
    def crash(row):
        if row["step"] == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(small_corpus, small_cfg(), checkpoint=tmp_path / "x.v1", callback=crash)
    _, result = run(small_corpus, small_cfg(), checkpoint=tmp_path / "x.v1", resume=True)
    assert result.steps == 10  # continued at step 20, not restarted at 0


def test_interrupt_between_the_two_files_leaves_a_loadable_checkpoint(small_corpus, tmp_path, monkeypatch):
    import lifecycle.train as t

    old, new = fresh_model(small_corpus, seed=1), fresh_model(small_corpus, seed=2)
    save_checkpoint(tmp_path / "m", old, step=1)
    real = t._atomic_write

    def die_before_json(path, write):  # the process dies after the tensor file's rename, before the JSON's
        if path.suffix == ".json":
            raise KeyboardInterrupt
        real(path, write)

    monkeypatch.setattr(t, "_atomic_write", die_before_json)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "m", new, step=2)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="own header"):
        state = load_checkpoint(tmp_path / "m")
    assert state["step"] == 2  # the new checkpoint, complete and verified
    assert torch.equal(state["model"].transformer.wte.weight, new.transformer.wte.weight)


def test_resume_with_the_json_missing_does_not_restart(small_corpus, tmp_path):
    ckpt = tmp_path / "run"

    def crash(row):
        if row["step"] == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(small_corpus, small_cfg(), checkpoint=ckpt, callback=crash)
    (tmp_path / "run.json").unlink()
    with pytest.warns(UserWarning, match="missing"):
        _, result = run(small_corpus, small_cfg(), checkpoint=ckpt, resume=True)
    assert result.steps == 10


def test_resume_from_an_unverifiable_checkpoint_raises_and_keeps_the_weights(small_corpus, tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "run.safetensors"  # a tensor file without JSON or header: nothing proves what it is
    save_file({"w": torch.ones(3)}, str(weights))
    before = weights.read_bytes()
    with pytest.raises(CheckpointError, match="missing"):
        run(small_corpus, small_cfg(), checkpoint=tmp_path / "run", resume=True)
    assert weights.read_bytes() == before


def test_diverging_run_raises_and_keeps_the_last_good_checkpoint(small_corpus, tmp_path):
    from lifecycle.train import TrainingDiverged

    calls = []

    def blow_up_after_step_10(model, x, y):
        calls.append(1)
        loss = model(x, y)[1]
        return loss * float("nan") if len(calls) > 10 else loss

    with pytest.raises(TrainingDiverged, match="diverged"):
        run(small_corpus, small_cfg(), checkpoint=tmp_path / "run", loss_fn=blow_up_after_step_10)
    state = load_checkpoint(tmp_path / "run")
    assert state["step"] == 10
    assert all(torch.isfinite(p).all() for p in state["model"].parameters())


def test_non_finite_weights_are_never_saved(tiny_model, tmp_path):
    from lifecycle.train import TrainingDiverged

    save_checkpoint(tmp_path / "m", tiny_model, step=1)
    with torch.no_grad():
        tiny_model.transformer.wte.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="inf/NaN"):
        save_checkpoint(tmp_path / "m", tiny_model, step=2)
    assert load_checkpoint(tmp_path / "m")["step"] == 1


@pytest.mark.parametrize("precision, dtype", [("auto", "float32"), ("fp32", "float32"), ("bf16", "bfloat16")])
def test_train_result_carries_the_dtype_its_matmuls_ran_in(small_corpus, precision, dtype):
    # MFU must divide by the peak of this dtype (on CUDA "auto" autocasts to bf16, not fp32)
    _, result = run(small_corpus, small_cfg(max_iters=2, eval_interval=2, precision=precision))
    assert result.compute_dtype == dtype and result.summary()["compute_dtype"] == dtype


def test_checkpoint_files_are_readable_by_others(tmp_path, tiny_model):
    """A course cache shared read-only (a lab server) must stay readable: atomic writes must not leave mkstemp's 0600."""
    save_checkpoint(tmp_path / "m", tiny_model)
    for f in checkpoint_files(tmp_path / "m"):
        assert f.stat().st_mode & 0o044 == 0o044, f"{f.name} has mode {oct(f.stat().st_mode)}"
