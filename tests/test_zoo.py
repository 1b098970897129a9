import json

import pytest
import torch

from lifecycle import zoo
from lifecycle.model import GPT, preset
from lifecycle.train import TrainConfig, train

calls = []


def fake_teacher(corpus, device, progress=True, callback=None):
    """A stand-in recipe: the test preset, trained for a few steps on the tests' own corpus."""
    calls.append(device)
    torch.manual_seed(0)
    model = GPT(preset("test", vocab_size=corpus.tokenizer.vocab_size))
    cfg = TrainConfig(max_iters=6, batch_size=4, block_size=16, warmup_iters=2, eval_interval=3, eval_iters=1)
    return model, train(model, corpus.train, corpus.val, cfg, device=device, progress=False, callback=callback)


@pytest.fixture
def fake_zoo(monkeypatch, small_corpus, isolated_cache):
    # models/ must be private here: replace the link to the real models with a folder of this test's own
    (isolated_cache / "models").unlink()
    (isolated_cache / "models").mkdir()
    calls.clear()
    monkeypatch.setitem(zoo.TRAINERS, "teacher", fake_teacher)
    monkeypatch.setattr(zoo, "corpus", lambda path=None: small_corpus)
    return zoo


def test_trains_once_then_loads_from_cache(fake_zoo):
    a = fake_zoo.get("teacher", device="cpu", progress=False)
    b = fake_zoo.get("teacher", device="cpu", progress=False)
    assert len(calls) == 1
    x = torch.randint(0, a.config.vocab_size, (1, 8))
    assert torch.equal(a(x)[0], b(x)[0])
    assert not a.training


def test_card_describes_the_model(fake_zoo):
    card = fake_zoo.card("teacher", device="cpu")
    assert card["n_params"] == fake_zoo.get("teacher", device="cpu").num_params()
    assert card["steps"] == 6 and card["final_val_loss"] > 0 and card["device"] == "cpu"
    assert len(fake_zoo.history("teacher", device="cpu")) == 2


def test_corrupt_cached_model_is_retrained(fake_zoo, capsys):
    fake_zoo.get("teacher", device="cpu", progress=False)
    path = fake_zoo.model_path("teacher", torch.device("cpu"))
    weights = path.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:50])
    fake_zoo.get("teacher", device="cpu", progress=False)
    assert len(calls) == 2
    assert "unusable" in capsys.readouterr().err


def test_unknown_model_name(fake_zoo):
    with pytest.raises(KeyError, match="unknown model"):
        fake_zoo.get("professor")


def test_cli_prints_the_card_as_json(fake_zoo, capsys):
    fake_zoo.main(["teacher", "--device", "cpu"])
    card = json.loads(capsys.readouterr().out)
    assert card["name"] == "teacher" and "config" in card and "tokenizer" not in card


def test_teacher_preset_follows_the_device():
    assert zoo.teacher_preset(torch.device("cpu")) == "cpu"
    assert zoo.teacher_preset(torch.device("cuda")) == "gpu"


def test_a_read_only_cache_still_serves_a_cached_model(fake_zoo, monkeypatch):
    """Regression (issue 15): get() tried to create its lock file first and raised OSError on a read-only cache."""
    import builtins
    import errno

    first = fake_zoo.get("teacher", device="cpu", progress=False)
    folder = fake_zoo.model_path("teacher", torch.device("cpu")).parent
    for lock in folder.glob("*.lock"):
        lock.unlink()

    def read_only_open(file, mode="r", *args, **kwargs):  # root ignores chmod, so refuse writes here too
        if any(m in mode for m in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(fake_zoo, "open", read_only_open, raising=False)
    folder.chmod(0o555)
    try:
        again = fake_zoo.get("teacher", device="cpu", progress=False)
        with pytest.raises(OSError, match="read-only"):  # a model that is not there cannot be trained there
            fake_zoo.build("teacher", device="cpu", progress=False)
    finally:
        folder.chmod(0o755)
    assert len(calls) == 1
    x = torch.randint(0, first.config.vocab_size, (1, 8))
    assert torch.equal(first(x)[0], again(x)[0])


def test_seed_study_runs_are_zoo_models_with_their_run_passed():
    import functools

    from lifecycle import distill

    for name in distill.SEED_RUNS:
        trainer = zoo.TRAINERS[name]
        assert isinstance(trainer.train_fn, functools.partial) and trainer.train_fn.keywords == {"run": name}
        assert trainer.train_fn.func is distill.train_seed_run
    assert zoo.TRAINERS["student"].train_fn is distill.train_student


def test_a_student_is_trained_with_the_zoos_teacher(fake_zoo):
    """The zoo passes its cached teacher (on the same device) to the distill trainer: distill never fetches it."""
    seen = []

    def fake_student(teacher, corpus, device, progress, callback):
        seen.append(teacher)
        return fake_teacher(corpus, device, progress, callback)

    teacher = fake_zoo.get("teacher", device="cpu", progress=False)
    model, _ = fake_zoo.StudentTrainer(fake_student)(fake_zoo.corpus(), torch.device("cpu"), progress=False)
    assert len(seen) == 1 and len(calls) == 2  # the teacher was loaded from the cache, not trained again
    x = torch.randint(0, teacher.config.vocab_size, (1, 8))
    assert torch.equal(seen[0](x)[0], teacher(x)[0])
