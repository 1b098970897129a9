"""Reference solutions of lesson 06's code exercises (06_distillation.ipynb)."""
import torch


def soften(logits, temperature):
    """The softened distribution softmax(logits / T) over the last dimension, shape (..., V)."""
    z = logits.float() / temperature
    z = z - z.max(dim=-1, keepdim=True).values  # exp of huge logits would overflow; the softmax is unchanged
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


def distillation_loss(student_logits, teacher_logits, targets, temperature, alpha):
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets), averaged over positions."""
    V = student_logits.size(-1)
    s = student_logits.float().reshape(-1, V)  # (N, V): every token position is one row
    t = teacher_logits.float().reshape(-1, V)
    log_q = torch.log_softmax(s / temperature, dim=-1)  # the student's softened log-probabilities
    log_p = torch.log_softmax(t / temperature, dim=-1)  # the teacher's
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()  # KL(p || q) per position, averaged
    ce = -torch.log_softmax(s, dim=-1).gather(-1, targets.reshape(-1, 1)).mean()  # at T = 1
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce
