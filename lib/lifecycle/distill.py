"""Knowledge distillation: train a small student on a big teacher's softened predictions.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network": a trained teacher's full output
distribution says more than the one-hot label does. After "To be or not to b" the label is "e", but the teacher
also puts a little probability on other letters, and how much it puts where (its "dark knowledge") tells the
student which mistakes are nearly right. Dividing the logits by a temperature T > 1 flattens both distributions
so those small probabilities carry weight in the loss. The student minimizes

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label)

The T^2 factor keeps the soft term's gradient on the same scale whatever T is: the gradient of the KL term
with respect to a student logit is (q_T - p_T) / T, so multiplying by T^2 leaves T * (q_T - p_T).

Two students with the same architecture, initial weights, batches and optimizer are trained through the one
training loop of the course (`lifecycle.train.train`, via its `loss_fn` hook): one with this loss, one with
hard labels only ("scratch"). Any difference in their validation loss is what distillation bought.
The zoo caches them: `lifecycle.zoo.get("student")` and `lifecycle.zoo.get("student-scratch")`.

Sanh et al. (2019, DistilBERT) and Gou et al. (2021, "Knowledge Distillation: A Survey") describe the same
recipe at scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .data import Corpus
from .device import seed_everything
from .model import GPT, GPTConfig, preset
from .train import TrainConfig, TrainResult, train


@dataclass(frozen=True)
class DistillConfig:
    """How the soft and hard losses are mixed: temperature T > 0 and the soft term's weight alpha in [0, 1]."""

    temperature: float = 1.0
    alpha: float = 0.5

    def __post_init__(self):
        check_distill(self.temperature, self.alpha)


def check_distill(temperature: float, alpha: float) -> None:
    """Raise ValueError naming the parameter when a distillation setting is out of range."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0 (try 1 to 4), got {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the weight of the teacher's soft targets) must be in [0, 1], got {alpha!r}")


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
# T = 1 and an even mix. On the cpu recipe (one run each, 2 CPU cores, validation loss / greedy acceptance rate of the
# student as a draft for the teacher at gamma 4): T=1 a=0.5 1.893 / 0.813; T=2 a=0.5 1.908 / 0.787; T=1 a=0.3
# 1.914 / 0.767; T=1 a=0.8 1.935 / 0.757; T=2 a=0.8 1.953 / 0.739; T=1 a=1 2.042 / 0.674; labels only 1.985.
# This teacher is already soft (about 1.8 nats per character), so flattening it further did not help.
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


def student_config(teacher: GPT) -> GPTConfig:
    """The `student` preset, sharing the teacher's tokenizer (vocab_size) and context window (block_size)."""
    return preset("student", vocab_size=teacher.config.vocab_size, block_size=teacher.config.block_size)


def _teacher_for(corpus: Corpus, device: torch.device) -> GPT:
    from . import zoo  # late import: the zoo imports this module by name when it trains a student

    teacher = zoo.get("teacher", device, progress=False)
    if teacher.config.vocab_size != corpus.tokenizer.vocab_size:
        raise ValueError(f"the cached teacher has vocab_size {teacher.config.vocab_size} but the corpus has "
                         f"{corpus.tokenizer.vocab_size} characters; retrain it with `python -m lifecycle.zoo "
                         "teacher --retrain` for this corpus")
    return teacher


def _train(corpus: Corpus, device: torch.device, progress: bool, callback: Callable | None,
           distill: bool) -> tuple[GPT, TrainResult]:
    device = torch.device(device)
    teacher = _teacher_for(corpus, device)
    cfg = STUDENT_TRAINING["gpu" if device.type == "cuda" else "cpu"]
    seed_everything(cfg.seed)  # both students start from the same weights
    student = GPT(student_config(teacher))
    loss_fn = make_loss_fn(teacher) if distill else None
    result = train(student, corpus.train, corpus.val, cfg, device=device, loss_fn=loss_fn,
                   progress=progress, callback=callback)
    return student, result


def train_student(corpus: Corpus, device: torch.device, progress: bool = True,
                  callback: Callable | None = None) -> tuple[GPT, TrainResult]:
    """The distilled student: the `student` preset trained on the cached teacher's soft targets (+ labels)."""
    return _train(corpus, device, progress, callback, distill=True)


def train_student_scratch(corpus: Corpus, device: torch.device, progress: bool = True,
                          callback: Callable | None = None) -> tuple[GPT, TrainResult]:
    """The control: the same student, recipe and batches, trained on the hard labels only."""
    return _train(corpus, device, progress, callback, distill=False)
