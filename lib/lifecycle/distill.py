"""Knowledge distillation: train a small student on a big teacher's softened predictions.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network": a trained teacher's full output
distribution says more than the one-hot label does. After "To be or not to b" the label is "e", but the teacher
also puts a little probability on other letters, and how much it puts where (its "dark knowledge") tells the
student which mistakes are nearly right. Dividing the logits by a temperature T > 1 flattens both distributions
so those small probabilities carry weight in the loss. The student minimizes

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label)

The T^2 factor keeps the soft term's gradient on the same scale whatever T is: the gradient of the KL term
with respect to a student logit is (q_T - p_T) / T, so multiplying by T^2 leaves T * (q_T - p_T).

The course's student also learns from text the teacher wrote itself: a share of every batch's rows are windows of
the teacher's own greedy continuations of short prompts, scored with the same loss (its labels are then the
teacher's own picks). Training on the teacher's outputs is sequence-level distillation (Kim & Rush 2016,
"Sequence-Level Knowledge Distillation"); DistillSpec (Zhou et al. 2024, ICLR) showed that a draft model for speculative decoding gains acceptance when it is
distilled on the text it will be asked to predict, and the course's student is lesson 08's draft. The teacher's
greedy output is what the draft sees and must match while drafting, so the pool is greedy text, and matching the
teacher there matters more than a slightly better fit to the training text.

Three students with the same architecture, initial weights, steps and optimizer are trained through the one training
loop of the course (`lifecycle.train.train`, via its `loss_fn` and `batch_fn` hooks), each on the same number of
tokens: "student" (this loss, part teacher-written text), "student-real-text" (this loss, training text only) and
"student-scratch" (hard labels on training text only). The differences in validation loss and in agreement with the
teacher are what each ingredient bought. The zoo caches all three: `lifecycle.zoo.get("student")` etc.;
the trainers here take the teacher as an argument, and only the zoo calls them (this module does not import the zoo).

Sanh et al. (2019, DistilBERT) and Gou et al. (2021, "Knowledge Distillation: A Survey") describe the same
recipe at scale.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F

from .checks import require_number
from .data import Corpus, get_batch
from .device import seed_everything
from .generate import Sampling, generate
from .model import GPT, GPTConfig, preset
from .train import TrainConfig, TrainResult, batch_generator, batch_shape, train


@dataclass(frozen=True)
class DistillConfig:
    """How the student learns from the teacher.

    temperature T > 0 and alpha in [0, 1]: how the soft and hard losses are mixed (the loss above).
    generated_fraction in [0, 1): the share of each batch's rows cut from text the teacher wrote itself, sampled at
    generation_temperature (0 = greedy) from short prompts of the training text; the rest are training text.
    """

    temperature: float = 1.0
    alpha: float = 0.5
    generated_fraction: float = 0.2
    generation_temperature: float = 0.0

    def __post_init__(self):
        check_distill(self.temperature, self.alpha)
        require_number("generated_fraction", self.generated_fraction, low=0, high=1, high_open=True,
                       hint="share of rows written by the teacher")
        require_number("generation_temperature", self.generation_temperature, low=0, hint="0 = greedy")


def check_distill(temperature: float, alpha: float) -> None:
    """Raise ValueError naming the parameter when a distillation setting is out of range."""
    require_number("temperature", temperature, low=0, low_open=True, hint="try 1 to 4")
    require_number("alpha", alpha, low=0, high=1, hint="the weight of the teacher's soft targets")


# The recipe both students share, by teacher preset: the same steps, batches, schedule and seed. Like the teacher's,
# most steps train on short windows placed at random offsets, the rest on full windows. The cpu recipe is sized so that
# the two students train in about two minutes together on two CPU cores (the distilled one also runs the teacher).
STUDENT_TRAINING: dict[str, TrainConfig] = {
    "cpu": TrainConfig(max_iters=1200, batch_size=3, lr=3e-3, min_lr=3e-4, warmup_iters=50, betas=(0.9, 0.99),
                       short_block_size=64, short_fraction=0.8, random_offsets=True, eval_interval=100,
                       eval_iters=10, seed=2024),
    "gpu": TrainConfig(max_iters=1500, batch_size=32, lr=2e-3, min_lr=2e-4, warmup_iters=100, betas=(0.9, 0.99),
                       short_block_size=128, short_fraction=0.5, random_offsets=True, eval_interval=150,
                       eval_iters=20, seed=2024),
}
# T = 1 and an even mix. On the cpu recipe, training text only (one run each, 2 CPU cores, validation loss / greedy
# acceptance rate of the student as a draft for the teacher at gamma 4): T=1 a=0.5 1.893 / 0.813; T=2 a=0.5
# 1.908 / 0.787; T=1 a=0.3 1.914 / 0.767; T=1 a=0.8 1.935 / 0.757; T=2 a=0.8 1.953 / 0.739; T=1 a=1 2.042 / 0.674;
# labels only 1.985. This teacher is already soft (about 1.8 nats per character), so flattening it did not help.
# Teacher-written rows (T=1, a=0.5; validation loss / greedy agreement with the teacher along its own greedy text, one
# run each, 2 CPU cores; the same recipe without teacher text gave 1.893 / 0.804 and labels only 1.985 / 0.740):
#   greedy text (temperature 0): share 0.2: 1.954 / 0.888; share 0.3: 1.955 / 0.883; share 0.45: 1.967 / 0.888
#   sampled at 0.15, share 0.35: 1.967 / 0.868; at 0.3, share 0.35: 1.945 / 0.851
#   earlier runs with a pool of 96 rows (other batch draws, spread about +-0.02): at 0.3, share 0.2 / 0.35 / 0.5:
#   1.938 / 0.852, 1.919 / 0.856, 1.991 / 0.847; at 0.5, share 0.25: 1.922 / 0.847; at 0.7 and 1.0, share 0.5:
#   1.940 / 0.830, 1.929 / 0.824
#   greedy text, share 0.2, with soft targets only on those rows (labels ignored): 1.975 / 0.794, so the teacher's
#   own picks as labels are what teach its argmax
# A fifth of the rows as greedy teacher text buys most of the agreement a draft needs for the least validation loss.
# Longer budgets shrink distillation's lead: at 2,400 steps the from-scratch student caught up (1.748 vs 1.752
# with T=2), because this small teacher is itself not far ahead of what one layer can learn from the text.
DISTILL: DistillConfig = DistillConfig()


def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The teacher's softened distribution softmax(logits / T), shape (..., V)."""
    check_distill(temperature, 0.0)
    return torch.softmax(logits.float() / temperature, dim=-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None,
                      temperature: float = DISTILL.temperature, alpha: float = DISTILL.alpha) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets), averaged over tokens.

    student_logits, teacher_logits: (..., V); targets: (...) token ids (may be None when alpha == 1).
    """
    check_distill(temperature, alpha)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
                         f"{tuple(teacher_logits.shape)}; they must share the tokenizer (vocab_size)")
    V = student_logits.size(-1)
    s = student_logits.float().reshape(-1, V)  # (N, V), N = every token position
    t = teacher_logits.detach().float().reshape(-1, V)
    log_q = F.log_softmax(s / temperature, dim=-1)
    log_p = F.log_softmax(t / temperature, dim=-1)
    # KL(p || q) = sum p (log p - log q), averaged over the N positions ("batchmean")
    soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature ** 2
    if alpha == 1.0:
        return alpha * soft
    if targets is None:
        raise ValueError("targets are needed when alpha < 1 (the hard-label part of the loss)")
    hard = F.cross_entropy(s, targets.reshape(-1))
    return alpha * soft + (1.0 - alpha) * hard


def make_loss_fn(teacher: GPT, config: DistillConfig = DISTILL) -> Callable:
    """A `loss_fn(model, x, y[, positions])` for `lifecycle.train.train` that distills `teacher` into `model`."""
    teacher.eval()

    def loss_fn(model: GPT, x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        # positions (B, T): where short training windows sit in the context window; both models see the same
        with torch.no_grad():  # the teacher only gives targets; no graph, no gradients
            teacher_logits, _ = teacher(x, positions=positions)
        student_logits, _ = model(x, positions=positions)
        return distillation_loss(student_logits, teacher_logits, y, config.temperature, config.alpha)

    return loss_fn


# Teacher-written text: rows per pool (each a 16-character prompt from the training text and block_size characters the
# teacher wrote after it), by teacher preset. On the cpu recipe the pool takes about ten seconds to write.
GENERATED_ROWS: dict[str, int] = {"cpu": 128, "gpu": 512}
PROMPT_LEN = 16


@torch.no_grad()
def teacher_text(teacher: GPT, data: torch.Tensor, rows: int, temperature: float, seed: int,
                 prompt_len: int = PROMPT_LEN) -> torch.Tensor:
    """Text the teacher wrote: (rows, prompt_len + block_size) token ids on the CPU.

    Each row starts with `prompt_len` tokens of `data` at a seeded random place and goes on with the teacher's own
    continuation, sampled at `temperature` (0 = greedy), all rows in one batch.
    """
    if len(data) <= prompt_len:
        raise ValueError(f"need more than {prompt_len} tokens of text to draw prompts from, got {len(data)}")
    device = next(teacher.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(data) - prompt_len, (rows,), generator=gen)
    prompts = data[starts[:, None] + torch.arange(prompt_len)].to(device)
    rule = Sampling(temperature)
    written = generate(teacher, prompts, teacher.config.block_size, sampling=rule, seed=None if rule.greedy else seed)
    return torch.cat([prompts, written], dim=1).cpu()


def mixed_batches(data: torch.Tensor, generated: torch.Tensor, fraction: float, cfg: TrainConfig, block_size: int,
                  device: torch.device | str = "cpu") -> Callable:
    """A `batch_fn(step)` for `lifecycle.train.train`: the usual batch of `data` windows, with its last
    round(fraction * rows) rows (at most rows - 1) replaced by windows of `generated` (teacher text) at seeded random
    places.

    The other rows are exactly the ones `train` would have drawn itself, so the batch shapes, the token count and the
    training-text rows match those of a student trained without teacher text.
    """
    def batch_fn(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows, context = batch_shape(step, cfg, block_size)
        x, y = get_batch(data, rows, context, batch_generator(cfg, step), device)
        m = min(round(fraction * rows), rows - 1)  # at least one row of training text (and its labels) per batch
        if m == 0:
            return x, y
        if generated.shape[1] <= context:
            raise ValueError(f"teacher text rows of {generated.shape[1]} tokens are too short for {context}-token "
                             "training windows")
        gen = batch_generator(cfg, step, salt=1)
        which = torch.randint(generated.shape[0], (m, 1), generator=gen)
        start = torch.randint(generated.shape[1] - context, (m, 1), generator=gen)
        windows = generated[which, start + torch.arange(context + 1)].to(device)  # (m, context + 1)
        # the labels are the teacher's own picks: on greedy text they teach its argmax, which is what a draft must match
        return torch.cat([x[:rows - m], windows[:, :-1]]), torch.cat([y[:rows - m], windows[:, 1:]])

    return batch_fn


def student_config(teacher: GPT) -> GPTConfig:
    """The `student` preset, sharing the teacher's tokenizer (vocab_size) and context window (block_size)."""
    return preset("student", vocab_size=teacher.config.vocab_size, block_size=teacher.config.block_size)


def check_teacher(teacher: GPT, corpus: Corpus) -> None:
    """Raise ValueError unless `teacher` reads `corpus`'s characters (same vocab_size)."""
    if teacher.config.vocab_size != corpus.tokenizer.vocab_size:
        raise ValueError(f"the teacher has vocab_size {teacher.config.vocab_size} but the corpus has "
                         f"{corpus.tokenizer.vocab_size} characters; retrain it with `python -m lifecycle.zoo "
                         "teacher --retrain` for this corpus")


# Teacher-text pools already written in this process, by (teacher weights, device, recipe, temperature, corpus): the
# seed runs of the distilled student share the main student's pool instead of paying ten seconds each to write it.
_POOLS: dict[tuple, torch.Tensor] = {}


def _fingerprint(model: GPT) -> str:
    """sha256 of a model's parameters (a few milliseconds for the teacher): which weights wrote a pool."""
    h = hashlib.sha256()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()


def _teacher_pool(teacher: GPT, corpus: Corpus, device: torch.device, recipe: str, temperature: float) -> torch.Tensor:
    """The pool of teacher-written rows for `recipe` (seeded by the main recipe's seed), written once per process."""
    key = (_fingerprint(teacher), str(device), recipe, temperature, len(corpus.train), int(corpus.train[:64].sum()))
    if key not in _POOLS:
        _POOLS[key] = teacher_text(teacher, corpus.train, GENERATED_ROWS[recipe], temperature,
                                   seed=STUDENT_TRAINING[recipe].seed)
    return _POOLS[key]


def _train(teacher: GPT, corpus: Corpus, device: torch.device, progress: bool, callback: Callable | None,
           config: DistillConfig | None, cfg: TrainConfig | None = None) -> tuple[GPT, TrainResult]:
    """Train the student preset with `config` (None: labels only, no teacher) through `lifecycle.train.train`,
    with the recipe's TrainConfig (or `cfg`). `teacher` gives the student's shape (and, with a config, its targets)."""
    device = torch.device(device)
    check_teacher(teacher, corpus)
    recipe = "gpu" if device.type == "cuda" else "cpu"
    cfg = cfg or STUDENT_TRAINING[recipe]
    batch_fn = None
    if config is not None and config.generated_fraction > 0:
        generated = _teacher_pool(teacher, corpus, device, recipe, config.generation_temperature)
        batch_fn = mixed_batches(corpus.train, generated, config.generated_fraction, cfg, teacher.config.block_size,
                                 device)
    seed_everything(cfg.seed)  # every student starts from the same weights
    student = GPT(student_config(teacher))
    loss_fn = make_loss_fn(teacher, config) if config is not None else None
    result = train(student, corpus.train, corpus.val, cfg, device=device, loss_fn=loss_fn, batch_fn=batch_fn,
                   progress=progress, callback=callback)
    return student, result


def train_student(teacher: GPT, corpus: Corpus, device: torch.device, progress: bool = True,
                  callback: Callable | None = None) -> tuple[GPT, TrainResult]:
    """The distilled student: the `student` preset trained on the cached teacher's soft targets (+ labels), with
    part of every batch cut from text the teacher wrote (`DISTILL`)."""
    return _train(teacher, corpus, device, progress, callback, DISTILL)


def train_student_real_text(teacher: GPT, corpus: Corpus, device: torch.device, progress: bool = True,
                            callback: Callable | None = None) -> tuple[GPT, TrainResult]:
    """The same distillation on training text only (no teacher-written rows): what that text adds, measured."""
    return _train(teacher, corpus, device, progress, callback, replace(DISTILL, generated_fraction=0.0))


def train_student_scratch(teacher: GPT, corpus: Corpus, device: torch.device, progress: bool = True,
                          callback: Callable | None = None) -> tuple[GPT, TrainResult]:
    """The control: the same student, recipe and training-text batches, trained on the hard labels only."""
    return _train(teacher, corpus, device, progress, callback, None)


# ---- the seed study: is the difference between the students larger than the noise of one run? ----

# Each student variant retrained with other seeds (initial weights and batch order) on a shorter budget that is the same
# for all of them, so that several runs of each fit a lesson's time: on the cpu recipe, 100 steps instead of 1,200,
# three seeds, about a minute for all nine runs on two CPU cores (the distilled variants also run the teacher). The
# teacher-written pool is the main student's, for every seed.
SEED_STUDY: dict[str, dict] = {"cpu": {"seeds": (1, 2, 3), "max_iters": 100},
                               "gpu": {"seeds": (1, 2, 3), "max_iters": 300}}
STUDY_VARIANTS: dict[str, DistillConfig | None] = {
    "student": DISTILL, "student-real-text": replace(DISTILL, generated_fraction=0.0), "student-scratch": None}
# zoo name -> (variant, seed): "student-seed1", "student-real-text-seed2", ...
SEED_RUNS: dict[str, tuple[str, int]] = {f"{v}-seed{s}": (v, s) for v in STUDY_VARIANTS
                                         for s in sorted({s for r in SEED_STUDY.values() for s in r["seeds"]})}


def study_config(recipe: str, seed: int) -> TrainConfig:
    """The recipe's TrainConfig compressed to the seed study's budget (same schedule shape, warm-up and switch to
    full windows scaled with it), with `seed`."""
    base, steps = STUDENT_TRAINING[recipe], SEED_STUDY[recipe]["max_iters"]
    return replace(base, max_iters=steps, seed=seed, eval_interval=steps,
                   warmup_iters=max(1, base.warmup_iters * steps // base.max_iters))


def train_seed_run(teacher: GPT, corpus: Corpus, device: torch.device, progress: bool = True,
                   callback: Callable | None = None, *, run: str) -> tuple[GPT, TrainResult]:
    """One run of the seed study: `run` is a name of SEED_RUNS ("student-scratch-seed2")."""
    if run not in SEED_RUNS:
        raise KeyError(f"unknown seed-study run {run!r}; the runs are {sorted(SEED_RUNS)}")
    variant, seed = SEED_RUNS[run]
    recipe = "gpu" if torch.device(device).type == "cuda" else "cpu"
    return _train(teacher, corpus, device, progress, callback, STUDY_VARIANTS[variant], study_config(recipe, seed))


# Two-sided 95% quantiles of Student's t distribution by degrees of freedom (any statistics table, e.g. NIST/SEMATECH
# e-Handbook of Statistical Methods, 1.3.6.7.2); beyond 30 the normal's 1.96 is close enough.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its 95% confidence interval, mean ± t · sd / sqrt(n).

    With a single value the interval is that value (no spread can be estimated); the caller should say so.
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = T95[max(k for k in T95 if k <= n - 1)] if n - 1 <= 30 else 1.96
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half

