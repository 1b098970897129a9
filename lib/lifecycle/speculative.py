"""Speculative decoding: a small draft model proposes tokens, the big target model checks them all in one pass.

Leviathan, Kalman & Matias (2023), "Fast Inference from Transformers via Speculative Decoding" (ICML), and
Chen et al. (2023), "Accelerating Large Language Model Decoding with Speculative Sampling". One *round*:

1. the draft proposes gamma tokens d_1..d_gamma, one cheap decode step each, with its own KV cache;
2. the target runs once over [last token, d_1..d_gamma] with its KV cache: gamma + 1 next-token distributions
   p_1..p_{gamma+1} for little more than the price of one decode step (at batch 1, a step's cost is mostly the
   weights' trip through memory and the per-layer overhead, which a few more tokens share);
3. d_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)), left to right, until the first rejection;
   a rejected position gets a token drawn from the residual max(0, p_i - q_i) (normalized) instead, and when
   every draft is accepted the target's last distribution gives one bonus token;
4. both caches are rolled back (`KVCache.truncate`) to the tokens that were kept.

The accept/resample rule makes every emitted token an exact draw from the target's distribution, whatever the
draft proposes (Leviathan et al., Theorem 3.5): the draft changes the speed, never the text's distribution.
In greedy mode (temperature 0) p and q are point masses at the argmax, the rule reduces to "keep drafts while
they equal the target's argmax", and the output equals the target's own greedy output token for token.

Expected cost (Leviathan et al., section 3): if each draft is accepted with probability alpha (independently),
a round yields E = (1 - alpha^(gamma+1)) / (1 - alpha) tokens for one target call and gamma draft steps, and a
draft step costs c target steps, so the expected speedup over the target alone is E / (gamma * c + 1). (On a CPU at
this course's size, the pass over gamma + 1 tokens costs noticeably more than one step; `expected_speedup` takes that
measured cost as an option.)

Drafting can also stop early: with `confidence` > 0 the draft ends its round after a proposal to which it gave less
probability than that (Hugging Face's assisted generation does the same with `assistant_confidence_threshold`, 0.4 by
default). A proposal the draft is unsure of is often rejected, and every draft step after a rejection is wasted. The
stopping rule looks only at the draft's own output, so the accept/resample rule still makes every token exact.

The context window follows `lifecycle.generate.context_start`, exactly as `generate` does: a round never
drafts across a point where the window slides, and when it slides both caches are rebuilt from the kept tokens.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch

from .checks import require_int, require_number
from .generate import GREEDY, Sampling, _as_batch, as_sampling, check_max_new_tokens, context_start
from .model import GPT, KVCache


# ---- the expected-speedup arithmetic (Leviathan et al. 2023, section 3) ----

def _check_alpha_gamma(alpha: float, gamma: int) -> None:
    require_number("alpha", alpha, low=0, high=1, hint="acceptance rate")
    require_int("gamma", gamma, low=0, hint="draft tokens per round")


def expected_tokens_per_call(alpha: float, gamma: int) -> float:
    """Tokens one target call yields on average: (1 - alpha^(gamma+1)) / (1 - alpha), or gamma + 1 at alpha = 1."""
    _check_alpha_gamma(alpha, gamma)
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float, verify_cost: float = 1.0) -> float:
    """Predicted speedup over the target alone: (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma*c + 1)).

    c is the cost of one draft step divided by the cost of one target step (measure it). verify_cost is the cost of
    the target's pass over gamma + 1 tokens in target steps: 1 in the paper's model (at large scale the pass costs
    what one step costs); measure it where that does not hold, and the denominator becomes gamma*c + verify_cost.
    """
    require_number("c", c, low=0, hint="draft step cost / target step cost")
    require_number("verify_cost", verify_cost, low=0, low_open=True,
                   hint="target pass over gamma+1 tokens / one target step")
    return expected_tokens_per_call(alpha, gamma) / (gamma * c + verify_cost)


def speedup_from_counts(tokens_per_call: float, drafts_per_round: float, c: float, verify_cost: float = 1.0) -> float:
    """The same cost model fed a run's own counts: tokens per target call / (drafts per round * c + verify_cost).

    With a fixed gamma it is what `expected_speedup` predicts once alpha is measured; it also prices drafting that
    stops early (`confidence`), where the number of drafts per round varies and the closed form does not apply.
    """
    for name, value in (("tokens_per_call", tokens_per_call), ("drafts_per_round", drafts_per_round), ("c", c)):
        require_number(name, value, low=0)
    require_number("verify_cost", verify_cost, low=0, low_open=True)
    return tokens_per_call / (drafts_per_round * c + verify_cost)


def best_gamma(alpha: float, c: float, max_gamma: int = 16) -> int:
    """The gamma in 1..max_gamma with the highest predicted speedup."""
    return max(range(1, max_gamma + 1), key=lambda g: expected_speedup(alpha, g, c))


# ---- one round's accept / reject rule, on plain distributions (testable without a model) ----

def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The distribution max(0, p - q), normalized: where the target wants more than the draft gave (V,)."""
    r = (p - q).clamp_min(0.0)
    total = r.sum()
    # total is 0 only when p == q, where no draft is ever rejected; fall back to p against rounding
    return r / total if total > 0 else p


def verify_sampling(p: torch.Tensor, q: torch.Tensor, drafts: torch.Tensor,
                    generator: torch.Generator | None = None) -> tuple[int, int]:
    """Accept/reject drafted tokens: (number accepted, the token that follows them).

    p: (k+1, V) target distributions after each prefix; q: (k, V) the draft's distributions that the k drafts
    (k,) were drawn from. Every output token is distributed exactly as under p.
    """
    k = drafts.shape[0]
    if p.shape[0] != k + 1 or q.shape[0] != k:
        raise ValueError(f"need p of shape (k+1, V) and q of shape (k, V) for k={k} drafts; got p {tuple(p.shape)},"
                         f" q {tuple(q.shape)}")
    rows = torch.arange(k, device=p.device)
    p_d, q_d = p[rows, drafts], q[rows, drafts]  # (k,) probability of each draft under target and draft
    r = torch.rand(k, generator=generator, device=p.device)
    accept = r * q_d < p_d  # r < p/q without dividing: always when p >= q, never when p = 0
    j = k if bool(accept.all()) else int(accept.to(torch.int8).argmin())  # first rejection
    dist = p[k] if j == k else residual(p[j], q[j])
    token = torch.multinomial(dist, 1, generator=generator)
    return j, int(token)


def acceptance_probability(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The chance that a draft drawn from q passes the accept/resample rule against p (Leviathan et al.'s beta):
    sum over x of min(p(x), q(x)), which is 1 - TV(p, q). p, q: (..., V) distributions -> (...).

    Averaged over the positions of a text, it is the expected acceptance rate alpha of sampled speculative decoding
    there; with point masses (greedy) it is 1 where the two argmaxes agree and 0 elsewhere.
    """
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape (..., V), got {tuple(p.shape)} and {tuple(q.shape)}")
    return torch.minimum(p, q).sum(-1)


def verify_greedy(target_logits: torch.Tensor, drafts: torch.Tensor) -> tuple[int, int]:
    """Greedy verification: keep drafts while they equal the target's argmax; (number accepted, next token).

    target_logits: (k+1, V); drafts: (k,). Same as verify_sampling with point-mass p and q.
    """
    best = target_logits.argmax(dim=-1).tolist()  # the target's own greedy choice after each prefix (k+1)
    proposed = drafts.tolist()
    j = 0
    while j < len(proposed) and proposed[j] == best[j]:  # plain Python: k is small, tensor ops cost more here
        j += 1
    return j, best[j]


# ---- the draft and target halves of a round ----

def propose(draft: GPT, cache: KVCache, pending: torch.Tensor, k: int, sampling: Sampling = GREEDY,
            generator: torch.Generator | None = None,
            confidence: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The draft's proposed tokens (k' <= k,) and, when sampling, the distributions q (k', V) they came from.

    pending (1, m): tokens the draft cache has not seen yet (the first call feeds them all). The last proposal is
    never fed back, so the draft makes exactly k' forward calls. confidence > 0: stop after a proposal that the
    draft itself gave less than this probability (it is then likely to be rejected, and drafting past it is likely
    wasted); k' = k when confidence is 0.
    """
    tokens, dists = [], []
    x = pending
    for _ in range(k):
        logits = draft(x, cache=cache)[0][0, -1]  # (V,) next-token logits
        if sampling.greedy:
            if confidence:
                p_token, token = torch.softmax(logits, dim=-1).max(dim=-1, keepdim=True)
            else:
                token = logits.argmax().view(1)
        else:
            q = sampling.probs(logits)
            token = torch.multinomial(q, 1, generator=generator)
            dists.append(q)
            p_token = q[token] if confidence else None
        tokens.append(token)
        if confidence and float(p_token) < confidence:
            break  # decided from the draft's own output only, so every emitted token stays exact (see the module)
        x = token.view(1, 1)
    if not tokens:
        return torch.empty(0, dtype=torch.long, device=pending.device), None
    return torch.cat(tokens), (torch.stack(dists) if dists else None)


def score(target: GPT, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
    """One target forward over tokens (T,) after its cache: next-token logits after each of them (T, V)."""
    return target(tokens.view(1, -1), cache=cache)[0][0]


# ---- statistics ----

@dataclass
class SpecStats:
    """Counts over a speculative run; acceptance_rate is the alpha of the expected-speedup formula."""

    gamma: int
    rounds: int = 0  # target verification calls
    proposed: int = 0  # draft tokens proposed (one draft forward call each)
    accepted: int = 0  # draft tokens accepted
    rejected: int = 0  # rounds that ended in a rejection
    new_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Drafts accepted per draft examined (examination stops at the first rejection of a round).

        This is the maximum-likelihood estimate of the per-token acceptance probability alpha in the model behind
        the formula; accepted / proposed would count drafts after a rejection, which were never examined.
        """
        examined = self.accepted + self.rejected
        return self.accepted / examined if examined else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        return self.new_tokens / self.rounds if self.rounds else 0.0

    @property
    def drafts_per_round(self) -> float:
        """Draft forward calls per target call: gamma, or fewer where drafting stopped early or near an end."""
        return self.proposed / self.rounds if self.rounds else 0.0

    def add(self, proposed: int, accepted: int) -> None:
        """Count one round: `proposed` drafts (one draft call each), `accepted` of them kept, plus one target token."""
        self.rounds += 1
        self.proposed += proposed
        self.accepted += accepted
        self.rejected += int(accepted < proposed)
        self.new_tokens += accepted + 1

    def summary(self) -> dict:
        return asdict(self) | {"acceptance_rate": self.acceptance_rate,
                               "tokens_per_target_call": self.tokens_per_target_call,
                               "drafts_per_round": self.drafts_per_round}


@dataclass
class Round:
    """One round, for showing the algorithm at work: what was proposed, how many were kept, what followed."""

    position: int  # tokens in the text before the round
    proposed: list[int] = field(default_factory=list)
    accepted: int = 0
    token: int = 0  # the target's token after the accepted drafts (a correction, or the bonus)

    @property
    def bonus(self) -> bool:
        """Every proposal was accepted, so the target's token came free with the same call."""
        return 0 < len(self.proposed) == self.accepted

    @property
    def new_tokens(self) -> list[int]:
        return self.proposed[:self.accepted] + [self.token]


# ---- the decoding loop ----

def _draft_budget(n: int, gamma: int, remaining: int, block_size: int, keep: int | None) -> int:
    """Drafts this round: at most gamma, leave room for the target's own token, never cross a window slide."""
    s = context_start(n, block_size, keep)
    # the window that starts at s holds texts of up to block_size + s tokens; one more and it slides
    return max(0, min(gamma, remaining - 1, block_size + s - n))


class SpeculativeDecoder:
    """Speculative decoding of one sequence, one round per `step()`; the caches stay inspectable between rounds.

    Between rounds, inside the current window [s, n) of the n-token text: the target cache holds seq[s:n-1] (all
    but the last token, which it scores next round together with the drafts); the draft cache holds
    seq[s:draft_len] (it catches up on seq[draft_len:n] in its first call of the next round).
    """

    def __init__(self, target: GPT, draft: GPT, prompt, max_new_tokens: int, *, gamma: int = 4,
                 sampling: Sampling | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, generator: torch.Generator | None = None,
                 keep: int | None = None, confidence: float = 0.0):
        sampling = as_sampling(sampling, temperature, top_k, top_p)  # a Sampling, or the loose keywords
        require_int("gamma", gamma, low=1, hint="draft tokens per round")
        require_number("confidence", confidence, low=0, high=1, high_open=True,
                       hint="the draft stops after a proposal it gave less probability than this; 0 = always draft "
                            "gamma tokens")
        check_max_new_tokens(max_new_tokens)
        W = target.config.block_size
        if (draft.config.vocab_size, draft.config.block_size) != (target.config.vocab_size, W):
            raise ValueError("draft and target must share the tokenizer and context window: (vocab_size, "
                             f"block_size) are {(draft.config.vocab_size, draft.config.block_size)} vs "
                             f"{(target.config.vocab_size, W)}")
        if generator is not None and seed is not None:
            raise ValueError("give either seed or generator, not both")
        device = next(target.parameters()).device
        seq = _as_batch(prompt, device, target.config.vocab_size)
        if seq.shape[0] != 1:
            raise ValueError(f"speculative decoding here runs one sequence at a time; got a batch of {seq.shape[0]}")
        context_start(seq.shape[1], W, keep)  # checks keep
        if not sampling.greedy and generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
        self.target, self.draft, self.gamma, self.keep, self.confidence = target, draft, gamma, keep, confidence
        self.sampling = sampling
        self.generator = generator
        self.stats = SpecStats(gamma)
        self.prompt_len = self.n = seq.shape[1]
        self.end = self.n + max_new_tokens
        self.buf = torch.empty(self.end, dtype=torch.long, device=device)  # the growing text
        self.buf[:self.n] = seq[0]
        self.target_cache, self.draft_cache = KVCache.for_model(target), KVCache.for_model(draft)
        self._rebuild()

    @property
    def done(self) -> bool:
        return self.n >= self.end

    @property
    def tokens(self) -> torch.Tensor:
        """The text so far, prompt included (n,)."""
        return self.buf[:self.n]

    @torch.inference_mode()
    def _rebuild(self) -> None:
        """Fill both caches for the window of the current text (at the start, and whenever the window slides)."""
        self.s = context_start(self.n, self.target.config.block_size, self.keep)
        self.target_cache.reset()
        self.draft_cache.reset()
        if self.n - 1 > self.s:
            self.target(self.buf[self.s:self.n - 1].view(1, -1), cache=self.target_cache)
        self.draft_len = self.s

    @torch.inference_mode()
    def step(self) -> Round:
        """Run one round: draft, verify in one target call, accept/reject, roll back the caches."""
        if self.done:
            raise RuntimeError("all max_new_tokens are generated; make a new SpeculativeDecoder to go on")
        n, s, buf = self.n, self.s, self.buf
        k = _draft_budget(n, self.gamma, self.end - n, self.target.config.block_size, self.keep)
        drafts, q = propose(self.draft, self.draft_cache, buf[self.draft_len:n].view(1, -1), k, self.sampling,
                            generator=self.generator, confidence=self.confidence)
        k = drafts.shape[0]  # fewer than planned when the draft stopped at a proposal it was unsure of
        logits = score(self.target, self.target_cache, torch.cat([buf[n - 1:n], drafts]))  # (k+1, V)
        if self.sampling.greedy:
            j, token = verify_greedy(logits, drafts)
        else:
            p = self.sampling.probs(logits)
            j, token = verify_sampling(p, q if q is not None else p[:0], drafts, self.generator)
        buf[n:n + j] = drafts[:j]
        buf[n + j] = token
        # roll back: the target keeps seq[s:n+j] (all but the new last token); the draft fed seq up to n+k-1
        self.target_cache.truncate(n + j - s)
        if k:
            self.draft_len = min(n + j, n + k - 1)
            self.draft_cache.truncate(self.draft_len - s)
        self.stats.add(proposed=k, accepted=j)
        self.n = n + j + 1
        if not self.done and context_start(self.n, self.target.config.block_size, self.keep) != s:
            self._rebuild()  # the window slid: both caches restart from the kept tokens
        return Round(position=n, proposed=drafts.tolist(), accepted=j, token=token)


def iter_rounds(target: GPT, draft: GPT, prompt, max_new_tokens: int, **kwargs) -> Iterator[Round]:
    """Yield the rounds of speculative decoding after `prompt`; keyword arguments as SpeculativeDecoder."""
    decoder = SpeculativeDecoder(target, draft, prompt, max_new_tokens, **kwargs)
    while not decoder.done:
        yield decoder.step()


def speculative_generate(target: GPT, draft: GPT, prompt, max_new_tokens: int,
                         **kwargs) -> tuple[torch.Tensor, SpecStats]:
    """The new tokens (1, max_new_tokens) after prompt, and the run's statistics; keywords as SpeculativeDecoder."""
    decoder = SpeculativeDecoder(target, draft, prompt, max_new_tokens, **kwargs)
    while not decoder.done:
        decoder.step()
    return decoder.tokens[decoder.prompt_len:].view(1, -1).clone(), decoder.stats


def speedup_summary(alpha: float, gamma: int, c: float, verify_cost: float = 1.0) -> dict[str, float]:
    """The formula's figures at one (alpha, gamma, c): the lesson-08 sliders' pure function."""
    best = best_gamma(alpha, c)
    return {"tokens_per_call": expected_tokens_per_call(alpha, gamma),
            "speedup": expected_speedup(alpha, gamma, c, verify_cost),
            "best_gamma": float(best), "best_speedup": expected_speedup(alpha, best, c, verify_cost)}
