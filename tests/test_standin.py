"""The stand-in loader (lifecycle.measure.standin): the zoo's trained model when cached, else one of its shape."""
from __future__ import annotations

import pytest
import torch

from lifecycle import zoo
from lifecycle.measure import standin as standin_module
from lifecycle.measure.standin import cached_or_standin, standin
from lifecycle.model import preset


@pytest.fixture
def small_zoo(monkeypatch, small_corpus, tiny_model):
    """A zoo whose corpus is the tests' small one and whose cached models are given by `cached` (name -> bool)."""
    cached: dict[str, bool] = {}
    monkeypatch.setattr(zoo, "corpus", lambda path=None: small_corpus)
    monkeypatch.setattr(zoo, "is_cached", lambda name, device=None: cached.get(name, False))
    monkeypatch.setattr(zoo, "get", lambda name, device=None, progress=True: tiny_model)
    return cached


def test_standin_has_the_teacher_shape(small_zoo, small_corpus):
    model = cached_or_standin("teacher", "cpu")
    expected = preset(zoo.teacher_preset(torch.device("cpu")), vocab_size=small_corpus.tokenizer.vocab_size)
    assert not model.trained
    assert model.model.config == expected
    assert "random weights" in model.note and "teacher" in model.note
    assert not model.model.training


def test_student_standin_reads_the_teachers_window(small_zoo):
    teacher, student = standin("teacher", "cpu"), standin("student", "cpu")
    assert student.config.block_size == teacher.config.block_size
    assert student.config.n_layer == preset("student").n_layer


def test_standin_is_seeded(small_zoo):
    a, b = standin("teacher", "cpu"), standin("teacher", "cpu")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_cached_model_is_used(small_zoo, tiny_model):
    small_zoo["teacher"] = True
    loaded = cached_or_standin("teacher", "cpu")
    assert loaded.trained and loaded.model is tiny_model
    assert "trained" in loaded.note


def test_no_standin_when_not_allowed(small_zoo, tiny_model):
    loaded = cached_or_standin("teacher", "cpu", allow_stand_in=False)  # the zoo would train it
    assert loaded.trained and loaded.model is tiny_model


def test_unknown_name_has_no_standin(small_zoo):
    with pytest.raises(ValueError, match="no stand-in"):
        standin_module.standin("student-scratch", "cpu")
