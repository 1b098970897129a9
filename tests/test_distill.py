"""Tests of lifecycle.distill: the loss is what the formula says, and the students are trained the same way.

Truths only: the distillation loss is zero when the student equals the teacher; its gradient matches the hand
derivation alpha*T*(q_T - p_T) + (1 - alpha)*(q - onehot) on a small case; T and alpha are validated; a few
distillation steps through the course's training loop move the student toward the teacher; the three students
share architecture, recipe and initial weights, differing only in the loss and in the teacher-written rows; those
rows are the teacher's own continuations, and they replace exactly their share of each batch.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lifecycle import distill
from lifecycle.device import num_threads
from lifecycle.data import get_batch
from lifecycle.distill import (DistillConfig, check_distill, distillation_loss, make_loss_fn, mixed_batches,
                               soft_targets, student_config, teacher_text)
from lifecycle.generate import generate
from lifecycle.model import GPT, preset
from lifecycle.train import TrainConfig, batch_generator, train


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def test_loss_is_zero_when_student_equals_teacher():
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0)) * 3
    for T in (0.5, 1.0, 2.0, 4.0):
        assert distillation_loss(logits, logits.clone(), None, temperature=T, alpha=1.0).item() == \
            pytest.approx(0.0, abs=1e-6)


def test_loss_is_zero_for_a_model_distilled_into_itself():
    torch.manual_seed(0)
    model = GPT(preset("test")).eval()
    x = torch.randint(0, 32, (2, 16))
    loss = make_loss_fn(model, DistillConfig(temperature=2.0, alpha=1.0))(model, x, x)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_loss_matches_the_formula():
    gen = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 6, generator=gen), torch.randn(3, 4, 6, generator=gen)
    y = torch.randint(0, 6, (3, 4), generator=gen)
    T, alpha = 2.5, 0.7
    p = torch.softmax(t / T, -1)
    kl = (p * (p.log() - torch.log_softmax(s / T, -1))).sum(-1).mean()  # mean over the 12 positions
    ce = F.cross_entropy(s.view(-1, 6), y.view(-1))
    expected = alpha * T ** 2 * kl + (1 - alpha) * ce
    assert distillation_loss(s, t, y, T, alpha).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(s, t, y, T, 0.0).item() == pytest.approx(ce.item(), rel=1e-6)  # alpha 0: labels only


def test_gradient_matches_hand_computation():
    """d loss / d s = [alpha * T * (softmax(s/T) - softmax(t/T)) + (1 - alpha) * (softmax(s) - onehot(y))] / N."""
    s = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.9, -1.2]], requires_grad=True)  # N = 2 positions, V = 3
    t = torch.tensor([[2.0, 0.0, -1.0], [-0.3, 0.4, 0.8]])
    y = torch.tensor([0, 2])
    T, alpha = 3.0, 0.6
    distillation_loss(s, t, y, T, alpha).backward()
    sd = s.detach()
    hand = (alpha * T * (torch.softmax(sd / T, -1) - torch.softmax(t / T, -1))
            + (1 - alpha) * (torch.softmax(sd, -1) - F.one_hot(y, 3).float())) / 2
    torch.testing.assert_close(s.grad, hand, rtol=1e-5, atol=1e-7)


def test_temperature_softens():
    logits = torch.tensor([4.0, 1.0, 0.0])
    entropy = [-(p * p.log()).sum().item() for p in (soft_targets(logits, T) for T in (0.5, 1.0, 2.0, 8.0))]
    assert entropy == sorted(entropy) and entropy[-1] < math.log(3)
    torch.testing.assert_close(soft_targets(logits, 1.0), torch.softmax(logits, -1))


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_temperature_is_validated(temperature):
    with pytest.raises(ValueError, match="temperature"):
        check_distill(temperature, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), temperature, 0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.01, float("nan"), None, False])
def test_alpha_is_validated(alpha):
    with pytest.raises(ValueError, match="alpha"):
        check_distill(2.0, alpha)
    with pytest.raises(ValueError, match="alpha"):
        DistillConfig(alpha=alpha)


@pytest.mark.parametrize("kw,match", [
    (dict(generated_fraction=1.0), "generated_fraction"), (dict(generated_fraction=-0.1), "generated_fraction"),
    (dict(generated_fraction=float("nan")), "generated_fraction"), (dict(generated_fraction="0.3"), "generated_fraction"),
    (dict(generation_temperature=-1.0), "generation_temperature"),
    (dict(generation_temperature=float("inf")), "generation_temperature"),
    (dict(generation_temperature=None), "generation_temperature")])
def test_teacher_text_settings_are_validated(kw, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**kw)


def test_shapes_and_labels_are_checked():
    with pytest.raises(ValueError, match="vocab_size"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), None, 1.0, 1.0)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), None, 1.0, 0.5)


def test_student_shares_tokenizer_and_window_and_is_a_quarter_of_the_teacher():
    teacher = GPT(preset("cpu", vocab_size=84))
    cfg = student_config(teacher)
    assert (cfg.vocab_size, cfg.block_size) == (84, teacher.config.block_size)
    assert GPT(cfg).num_params() <= teacher.num_params() / 4


def test_distillation_through_the_training_loop_moves_the_student_to_the_teacher(small_corpus):
    vocab = small_corpus.tokenizer.vocab_size
    torch.manual_seed(0)
    teacher = GPT(preset("test", vocab_size=vocab)).eval()
    with torch.no_grad():  # a teacher with opinions: larger weights give peaked distributions
        for p in teacher.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    torch.manual_seed(1)
    student = GPT(preset("test", vocab_size=vocab, n_layer=1))
    x = small_corpus.val[:16 * 4].view(4, 16)
    loss_fn = make_loss_fn(teacher, DistillConfig(temperature=1.0, alpha=1.0))
    with torch.no_grad():
        before = loss_fn(student.eval(), x, x).item()
    cfg = TrainConfig(max_iters=40, batch_size=8, block_size=16, lr=1e-2, min_lr=1e-3, warmup_iters=5,
                      eval_interval=40, eval_iters=2)
    train(student, small_corpus.train, small_corpus.val, cfg, device="cpu", loss_fn=loss_fn, progress=False)
    with torch.no_grad():
        after = loss_fn(student.eval(), x, x).item()
    assert after < 0.7 * before


def test_students_differ_only_in_the_loss_and_the_teacher_text(small_corpus, monkeypatch):
    """The three students: same config, same initial weights, same training-text batches; the loss and the
    teacher-written rows are the only differences."""
    vocab = small_corpus.tokenizer.vocab_size
    torch.manual_seed(0)
    teacher = GPT(preset("test", vocab_size=vocab)).eval()
    seen = []

    def fake_train(model, train_data, val_data, cfg, **kw):
        seen.append({"init": {k: v.clone() for k, v in model.state_dict().items()}, "cfg": cfg,
                     "loss_fn": kw.get("loss_fn"), "batch_fn": kw.get("batch_fn")})
        return "result"

    monkeypatch.setattr(distill, "train", fake_train)
    monkeypatch.setattr(distill, "student_config", lambda t: preset("test", vocab_size=vocab, n_layer=1))
    models = [fn(teacher, small_corpus, torch.device("cpu"), progress=False)
              for fn in (distill.train_student, distill.train_student_real_text, distill.train_student_scratch)]
    assert all(r == "result" for _, r in models) and len({m.config for m, _ in models}) == 1
    first = seen[0]["init"]
    assert all(torch.equal(first[k], other["init"][k]) for other in seen[1:] for k in first)  # same start
    assert seen[0]["cfg"] is seen[1]["cfg"] is seen[2]["cfg"]
    assert callable(seen[0]["loss_fn"]) and callable(seen[1]["loss_fn"]) and seen[2]["loss_fn"] is None
    assert callable(seen[0]["batch_fn"]) and seen[1]["batch_fn"] is None and seen[2]["batch_fn"] is None
    cfg = seen[0]["cfg"]
    last = cfg.max_iters - 1  # a full-window step: three rows of the test model's 32-token window
    x, _ = seen[0]["batch_fn"](last)
    x0, _ = get_batch(small_corpus.train, *x.shape, batch_generator(cfg, last))
    m = round(distill.DISTILL.generated_fraction * x.shape[0])
    assert 0 < m < x.shape[0] and torch.equal(x[:-m], x0[:-m]) and not torch.equal(x[-m:], x0[-m:])



# ---- teacher-written text ----

@pytest.fixture(scope="module")
def test_teacher() -> GPT:
    torch.manual_seed(0)
    teacher = GPT(preset("test", vocab_size=40)).eval()
    with torch.no_grad():
        for p in teacher.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return teacher


def test_teacher_text_is_a_training_prompt_and_the_teachers_continuation(test_teacher):
    data = torch.randint(0, 40, (500,), generator=torch.Generator().manual_seed(1))
    W = test_teacher.config.block_size
    rows = teacher_text(test_teacher, data, rows=5, temperature=0.0, seed=3, prompt_len=8)
    assert rows.shape == (5, 8 + W) and rows.device.type == "cpu"
    for row in rows:
        prompt = row[:8]
        assert any(torch.equal(prompt, data[i:i + 8]) for i in range(len(data) - 8))  # a slice of the text
        assert torch.equal(row[8:], generate(test_teacher, prompt, W)[0])  # greedy: the teacher's own output
    assert torch.equal(rows, teacher_text(test_teacher, data, rows=5, temperature=0.0, seed=3, prompt_len=8))
    sampled = teacher_text(test_teacher, data, rows=5, temperature=1.0, seed=3, prompt_len=8)
    assert torch.equal(sampled, teacher_text(test_teacher, data, rows=5, temperature=1.0, seed=3, prompt_len=8))
    assert not torch.equal(sampled[:, 8:], rows[:, 8:])  # sampling at T=1 departs from greedy text
    with pytest.raises(ValueError, match="prompts"):
        teacher_text(test_teacher, data[:8], rows=2, temperature=0.0, seed=0, prompt_len=8)


@pytest.mark.parametrize("fraction", [0.0, 0.35, 0.5, 0.9])
@pytest.mark.parametrize("step", [0, 7, 30])
def test_mixed_batches_replace_exactly_their_share_of_rows(fraction, step):
    data = torch.arange(1000) % 37  # every window of the text is recognisable by where it starts
    generated = 100 + torch.arange(6 * 50).view(6, 50)  # ids no text window holds, each row a run of distinct ids
    cfg = TrainConfig(max_iters=40, batch_size=2, block_size=32, short_block_size=8, short_fraction=0.5, seed=5)
    x, y = mixed_batches(data, generated, fraction, cfg, block_size=32)(step)
    rows, context = (8, 8) if step < 20 else (2, 32)
    x0, y0 = get_batch(data, rows, context, batch_generator(cfg, step))  # what train() draws without teacher text
    m = min(round(fraction * rows), rows - 1)
    assert x.shape == y.shape == (rows, context)
    assert torch.equal(x[:rows - m], x0[:rows - m]) and torch.equal(y[:rows - m], y0[:rows - m])
    for xr, yr in zip(x[rows - m:], y[rows - m:]):
        assert bool((xr >= 100).all())  # teacher text, and a contiguous window of one of its rows
        assert int(xr[-1] - xr[0]) == context - 1 and (int(xr[0]) - 100) // 50 == (int(xr[-1]) - 100) // 50
        assert torch.equal(yr, xr + 1)  # the targets are the next tokens of the same row
    short = generated[:, :context]  # rows no longer than the window: no room for a target
    if m:
        with pytest.raises(ValueError, match="too short"):
            mixed_batches(data, short, fraction, cfg, block_size=32)(step)


# ---- the seed study (lesson 06): several seeds per student, a shorter budget equal for all ----

def test_seed_study_config_is_the_recipe_compressed_and_the_same_for_every_variant():
    for recipe, study in distill.SEED_STUDY.items():
        for seed in study["seeds"]:
            cfg = distill.study_config(recipe, seed)
            base = distill.STUDENT_TRAINING[recipe]
            assert cfg.max_iters == study["max_iters"] < base.max_iters and cfg.seed == seed
            assert (cfg.lr, cfg.batch_size, cfg.short_fraction) == (base.lr, base.batch_size, base.short_fraction)
            assert 1 <= cfg.warmup_iters < cfg.max_iters
    assert set(distill.SEED_RUNS) == {f"{v}-seed{s}" for v in ("student", "student-real-text", "student-scratch")
                                      for s in distill.SEED_STUDY["cpu"]["seeds"]}


def test_seed_runs_pair_the_variants_and_share_one_teacher_pool(small_corpus, monkeypatch):
    vocab = small_corpus.tokenizer.vocab_size
    torch.manual_seed(0)
    teacher = GPT(preset("test", vocab_size=vocab)).eval()
    seen, pools = [], []
    real_teacher_text = distill.teacher_text

    def counting_teacher_text(*a, **k):
        pools.append(1)
        return real_teacher_text(*a, **k)

    def fake_train(model, train_data, val_data, cfg, **kw):
        seen.append({"init": next(iter(model.state_dict().values())).clone(), "cfg": cfg,
                     "loss_fn": kw.get("loss_fn"), "batch_fn": kw.get("batch_fn")})
        return "result"

    monkeypatch.setattr(distill, "train", fake_train)
    monkeypatch.setattr(distill, "teacher_text", counting_teacher_text)
    monkeypatch.setattr(distill, "student_config", lambda t: preset("test", vocab_size=vocab, n_layer=1))
    monkeypatch.setattr(distill, "_POOLS", {})
    monkeypatch.setitem(distill.GENERATED_ROWS, "cpu", 4)
    distill.train_student(teacher, small_corpus, torch.device("cpu"), progress=False)
    for name in ("student-seed1", "student-real-text-seed1", "student-scratch-seed1", "student-scratch-seed2"):
        distill.train_seed_run(teacher, small_corpus, torch.device("cpu"), progress=False, run=name)
    main, s1, r1, x1, x2 = seen
    assert len(pools) == 1  # the seed runs reused the main student's teacher-written pool
    assert s1["cfg"] == r1["cfg"] == x1["cfg"] and s1["cfg"].seed == 1 and x2["cfg"].seed == 2
    assert s1["cfg"].max_iters == distill.SEED_STUDY["cpu"]["max_iters"]
    assert torch.equal(s1["init"], r1["init"]) and torch.equal(s1["init"], x1["init"])  # paired: same start per seed
    assert not torch.equal(x1["init"], x2["init"]) and not torch.equal(main["init"], s1["init"])
    assert callable(s1["batch_fn"]) and r1["batch_fn"] is None and x1["loss_fn"] is None
    with pytest.raises(KeyError, match="seed-study run"):
        distill.train_seed_run(teacher, small_corpus, torch.device("cpu"), run="student-seed99")


def test_mean_interval_hand_cases():
    mean, lo, hi = distill.mean_interval([1.0, 2.0, 3.0])  # sd 1, t(2 df) = 4.303
    assert mean == 2.0 and hi - mean == pytest.approx(4.303 / 3 ** 0.5) and mean - lo == pytest.approx(hi - mean)
    assert distill.mean_interval([0.5]) == (0.5, 0.5, 0.5)
    assert distill.mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one"):
        distill.mean_interval([])


def test_a_teacher_for_another_alphabet_is_refused(small_corpus):
    """The trainers take the teacher as an argument; one that reads other characters than the corpus is refused."""
    torch.manual_seed(0)
    wrong = GPT(preset("test", vocab_size=small_corpus.tokenizer.vocab_size + 1)).eval()
    with pytest.raises(ValueError, match="vocab_size"):
        distill.train_student_scratch(wrong, small_corpus, torch.device("cpu"), progress=False)
