"""A tiny GPT: GPT-2's architecture at course size, with a KV cache that its forward pass knows how to use.

Architecture (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"; nanoGPT's layout):
learned token + position embeddings, n_layer pre-LayerNorm blocks of causal self-attention and a GELU MLP
(tanh approximation, as GPT-2), a final LayerNorm, and an output head tied to the token embedding. Parameter
names follow Hugging Face's `GPT2LMHeadModel`, so `to_hf_gpt2` ports our weights into it exactly.

The KV cache lives beside the model, not inside it: `KVCache` preallocates keys and values for every layer,
`GPT.forward(idx, cache=cache)` writes the new positions into it and attends over everything cached so far.
The same forward serves training (no cache), prefill (many tokens into an empty cache), decode (one token),
verification of several drafted tokens (speculative decoding), and padded batches (`key_mask`). Given the position
as a tensor (`input_pos`), it takes a static path whose shapes never change, the one `lifecycle.compiled` compiles.
The forward pass uses PyTorch's fused attention (SDPA), which never stores the attention weights;
`attention_weights(model, idx)` computes them explicitly, every layer and head, to look at (lesson 01).

Glossary: B batch, T new tokens, S cached + new tokens, C = n_embd, nh = n_head, hs = C // nh, V = vocab_size.

FLOP counts follow Kaplan et al. (2020) and the PaLM paper (Chowdhery et al. 2022, appendix B): a forward pass
costs 2 FLOPs per parameter per token plus 4·n_layer·T·C for the attention scores and their weighted sum;
training (forward + backward) costs three times the forward, i.e. 6·N + 12·n_layer·T·C per token.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import require_int


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 84
    block_size: int = 384  # context window T_max
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            require_int(f"GPTConfig.{name}", getattr(self, name), low=1)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        known = set(cls.__dataclass_fields__)
        if unknown := set(d) - known:
            raise ValueError(f"unknown GPTConfig fields {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**d)


# Named presets; vocab_size is set from the tokenizer when a model is built for a corpus.
PRESETS: dict[str, GPTConfig] = {
    # the course's teacher: trains in about three minutes on two CPU cores; six layers deep so that a one-layer
    # draft model is much cheaper per decode step (speculative decoding, lesson 08)
    "cpu": GPTConfig(block_size=384, n_layer=6, n_head=4, n_embd=128),
    # the same shape scaled for a Colab T4 or better
    "gpu": GPTConfig(block_size=384, n_layer=8, n_head=8, n_embd=384, dropout=0.1),
    # the distilled student and speculative draft: one layer, so a decode step costs a fraction of the teacher's
    "student": GPTConfig(block_size=384, n_layer=1, n_head=4, n_embd=128),
    # unit tests
    "test": GPTConfig(vocab_size=32, block_size=32, n_layer=2, n_head=2, n_embd=32),
}


def preset(name: str, **overrides) -> GPTConfig:
    """A preset by exact name, with fields overridden (e.g. vocab_size from the tokenizer)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass(eq=False)
class KVCache:
    """Keys and values of every layer: k, v of shape (n_layer, B, nh, max_len, hs), preallocated.

    `length` positions are filled. An optional `key_mask` (B, max_len) marks which cached positions each row may
    attend to (False for padding), so rows of a batch can hold prompts of different lengths.
    `KVCache.allocate(config, ...)` (or `for_model`) makes an empty one; `KVCache(k, v, length)` wraps tensors that
    exist already, e.g. some rows of a bigger cache: it shares their storage, so writes go through.
    """

    k: torch.Tensor  # (n_layer, B, nh, max_len, hs)
    v: torch.Tensor
    length: int = 0
    key_mask: torch.Tensor | None = None  # (B, max_len) bool, or None: every row attends to every cached key

    @classmethod
    def allocate(cls, config: GPTConfig, batch_size: int = 1, max_len: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "KVCache":
        """An empty cache of max_len positions (default: the context window) for `batch_size` rows."""
        max_len = max_len or config.block_size
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @classmethod
    def for_model(cls, model: "GPT", batch_size: int = 1, max_len: int | None = None) -> "KVCache":
        """An empty cache on the model's device, in its dtype."""
        p = next(model.parameters())
        return cls.allocate(model.config, batch_size, max_len, p.device, p.dtype)

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def write(self, layer: int, start: int | torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at positions start..start+T; return all keys/values up to there (B, nh, S, hs).

        start may instead be a (T,) tensor of positions (the static path, see `GPT.forward`'s input_pos): k, v
        then go to those slots by index and all max_len slots come back, so the shapes are the same at every step.
        """
        if isinstance(start, torch.Tensor):
            # one index_put into the whole buffer: writing through the view self.k[layer] would make torch.compile
            # copy the layer's entire cache every step. Two tensor indices around slices put their dim first, so
            # the values go in as (T, B, nh, hs).
            at = (torch.tensor([layer], device=start.device), slice(None), slice(None), start)
            self.k[at] = k.permute(2, 0, 1, 3)
            self.v[at] = v.permute(2, 0, 1, 3)
            return self.k[layer], self.v[layer]  # (B, nh, max_len, hs)
        end = start + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def truncate(self, length: int) -> None:
        """Forget everything after `length` positions (speculative decoding's rollback)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of length {self.length} to {length}")
        self.length = length

    def reset(self) -> None:
        self.length = 0
        self.key_mask = None

    def clone(self) -> "KVCache":
        key_mask = None if self.key_mask is None else self.key_mask.clone()
        return KVCache(self.k.clone(), self.v.clone(), self.length, key_mask)

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


def sinusoidal_positions(n_positions: int, n_embd: int, std: float = 0.02) -> torch.Tensor:
    """Sines and cosines of geometric frequencies (Vaswani et al. 2017), scaled to an init std of `std`.

    GPT-2 starts its learned position table from noise, so every position must learn separately how to find
    its neighbours, which takes many steps when windows are long. Starting from sinusoids (still a learned
    table, so the architecture and the Hugging Face port are unchanged) gives nearby positions similar vectors
    from step one.
    """
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, n_embd, 2, dtype=torch.float32) / n_embd)
    table = torch.zeros(n_positions, n_embd)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: n_embd // 2])
    return table * (std * math.sqrt(2))  # sin and cos have std 1/sqrt(2)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, layer: int = 0, cache: KVCache | None = None, start: int | torch.Tensor = 0, mask=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if cache is not None:
            k, v = cache.write(layer, start, k, v)  # (B, nh, S, hs), S = start + T
        dropout = self.dropout if self.training else 0.0
        if mask is None:
            # is_causal aligns the mask top-left, right only when queries and keys start together
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The causal attention weights softmax(q·kᵀ/√hs) of every head for input x (B, T, C): (B, nh, T, T).

        What SDPA computes inside `forward` (no cache, no padding, no dropout), written out so it can be looked at:
        row i of a head's (T, T) matrix is how query position i spreads its attention over key positions 0..i.
        """
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, _ = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)  # key after query
        return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, layer=0, cache=None, start=0, mask=None):
        x = x + self.attn(self.ln_1(x), layer, cache, start, mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        with torch.no_grad():
            self.transformer.wpe.weight.copy_(sinusoidal_positions(config.block_size, config.n_embd))
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                positions: torch.Tensor | None = None, key_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None):
        """Logits (B, T, V) for tokens idx (B, T), and the mean cross-entropy if `targets` are given.

        cache: new keys/values go to positions cache.length.. and attention spans everything cached.
        positions: (B, T) position ids, for rows that are left-padded; default start + 0..T-1.
        key_mask: (B, T) bool, False at padding tokens that no query may attend to.
        input_pos: (T,) long tensor, the positions of the new tokens: the static path, for torch.compile (below).
        """
        B, T = idx.shape
        if input_pos is not None:
            # The static path (after gpt-fast): the position is a tensor, not the Python int cache.length, keys
            # go to their slots by index and attention spans all max_len slots under a mask, so every decode step
            # has the same shapes and torch.compile compiles it once. cache.length is left to the caller.
            if cache is None or cache.key_mask is not None or positions is not None or key_mask is not None:
                raise ValueError("input_pos needs a cache without padding (no key_mask, no positions)")
            start, pos_emb = input_pos, self.transformer.wpe(input_pos)  # (T, C)
            slots = torch.arange(cache.max_len, device=idx.device)
            mask = (slots <= input_pos[:, None])[None, None]  # (1, 1, T, max_len): query at p sees slots 0..p
        else:
            start = cache.length if cache is not None else 0
            S = start + T
            if S > (cache.max_len if cache is not None else self.config.block_size):
                raise ValueError(f"{S} positions exceed the context window of {self.config.block_size} tokens; "
                                 "generate() slides the window for you (see lifecycle.generate)")
            if positions is None:
                pos_emb = self.transformer.wpe.weight[start:S]  # (T, C)
            else:
                pos_emb = self.transformer.wpe(positions)  # (B, T, C)
            mask = self._attention_mask(B, T, start, cache, key_mask, idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + pos_emb)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, layer, cache, start, mask)
        if cache is not None and input_pos is None:
            cache.length = start + T
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @staticmethod
    def _attention_mask(B, T, start, cache, key_mask, device):
        """None where SDPA's own causal flag is right; else a mask (B or 1, 1, T, S): bool (True = attend) where rows
        have padding, additive float (0 = attend, -inf = not) where only causality matters."""
        if cache is not None and key_mask is not None:
            if cache.key_mask is None:
                cache.key_mask = torch.ones(cache.batch_size, cache.max_len, dtype=torch.bool, device=device)
            cache.key_mask[:, start:start + T] = key_mask
        keys = cache.key_mask[:, :start + T] if cache is not None and cache.key_mask is not None else key_mask
        if keys is None and (start == 0 or T == 1):
            return None  # plain causal (or a single query that may see every cached key)
        S = start + T
        if keys is None:
            # a few new tokens after a cache (verifying drafts): -inf on the keys after each query, 0 elsewhere. An
            # additive float mask is added to the scores as is; a bool one is converted again in every layer.
            # (only reached with a cache: without one, start is 0 and SDPA's causal flag is enough)
            return torch.full((T, S), float("-inf"), dtype=cache.k.dtype, device=device).triu_(start + 1)[None, None]
        causal = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=start)  # query i sees keys <= start+i
        mask = causal[None, None] & keys[:, None, None, :]
        # a query on a padding position would see no key at all: let it see itself so softmax stays finite
        return mask | torch.eye(S, dtype=torch.bool, device=device)[start:S][None, None]

    # ---- sizes and FLOPs ----

    def num_params(self, include_positions: bool = True) -> int:
        """Parameter count (the tied embedding/head counted once)."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_positions else n - self.transformer.wpe.weight.numel()

    def flops_per_token(self, context: int | None = None, training: bool = True) -> float:
        """FLOPs per token: 2·N (forward) or 6·N (training), plus attention over `context` tokens.

        N excludes the position table, which is a lookup and costs no multiply-adds.
        """
        T = self.config.block_size if context is None else context
        forward = 2 * self.num_params(include_positions=False) + 4 * self.config.n_layer * T * self.config.n_embd
        return 3 * forward if training else forward

    def nbytes(self) -> int:
        """Bytes of parameters and buffers as held in memory."""
        return sum(t.numel() * t.element_size() for t in list(self.parameters()) + list(self.buffers()))


@torch.no_grad()
def attention_weights(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Attention weights of every layer and head on tokens idx (B, T): (n_layer, B, nh, T, T).

    Runs the forward pass block by block (as `GPT.forward` does without a cache) and reads each layer's weights
    off its LayerNorm-ed input. Meant for a model in eval mode (dropout would make the weights random).
    """
    T = idx.shape[1]
    if T > model.config.block_size:
        raise ValueError(f"{T} tokens exceed the context window of {model.config.block_size}; pass a shorter text")
    x = model.transformer.wte(idx) + model.transformer.wpe.weight[:T]  # (B, T, C)
    layers = []
    for block in model.transformer.h:
        layers.append(block.attn.weights(block.ln_1(x)))
        x = block(x)
    return torch.stack(layers)


def to_hf_gpt2(model: GPT):
    """The same network as a Hugging Face `GPT2LMHeadModel` carrying our weights (no download)."""
    logging.disable(logging.WARNING)  # transformers' first import can pull in torchao, whose notices say nothing here
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    finally:
        logging.disable(logging.NOTSET)

    c = model.config
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0, pad_token_id=0))
    state = {}
    for name, tensor in model.state_dict().items():
        # HF's GPT-2 stores its projections as Conv1D, whose weight is the transpose of nn.Linear's
        is_conv1d = name.endswith(".weight") and any(f"{m}.weight" in name for m in ("c_attn", "c_proj", "c_fc"))
        state[name] = tensor.t().contiguous() if is_conv1d else tensor
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or unexpected:
        raise RuntimeError(f"port to GPT2LMHeadModel failed: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf.to(next(model.parameters()).device).eval()
