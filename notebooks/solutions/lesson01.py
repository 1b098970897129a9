"""Reference solutions to lesson 01's code exercises (the blanks in 01_training.ipynb, filled in)."""
import math


def lr_schedule(step, lr, min_lr, warmup_iters, max_iters):
    """The learning rate of step `step` (counting from 0): linear warmup, then cosine decay to min_lr."""
    if step < warmup_iters:
        return lr * (step + 1) / warmup_iters
    progress = min(1.0, (step - warmup_iters) / max(1, max_iters - warmup_iters))  # 0 → 1, then stays at 1
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr=2e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    """One AdamW update of one tensor; returns (new param, new exp_avg, new exp_avg_sq)."""
    beta1, beta2 = betas
    param = param * (1 - lr * weight_decay)  # decoupled weight decay: shrink the weights, not the gradient
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad  # running mean of the gradient
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad  # running mean of its square
    m_hat = exp_avg / (1 - beta1 ** step)  # bias correction: the averages start at zero
    v_hat = exp_avg_sq / (1 - beta2 ** step)
    param = param - lr * m_hat / (v_hat.sqrt() + eps)
    return param, exp_avg, exp_avg_sq
