"""Reference solutions of lesson 08's code exercises (08_speculative_decoding.ipynb)."""


def verify_greedy(target_logits, drafts):
    """(number of drafts accepted, the target's token that follows them) for one greedy round."""
    best = target_logits.argmax(dim=-1)  # (k+1,) the target's greedy pick after each prefix
    accepted = 0
    while accepted < len(drafts) and int(drafts[accepted]) == int(best[accepted]):
        accepted += 1
    return accepted, int(best[accepted])


def predicted_speedup(alpha, gamma, c):
    """Expected tokens per round divided by the round's cost in target steps."""
    tokens = gamma + 1 if alpha == 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return tokens / (gamma * c + 1)
