"""lifecycle.measure.quality and .precisions: the quality metrics, the precision grid's rows, the variant table,
and the fused-int8 width sweep."""
import pytest
import torch

from lifecycle.measure.precisions import (SWEEP_VARIANTS, MeasureConfig, best_point, build, first_paying, quality,
                                          table, width_sweep)
from lifecycle.measure.quality import (agreement_text, agreement_with, greedy_agreement, greedy_choices, prompt_set,
                                      val_loss)
from lifecycle.model import GPT, preset
from lifecycle.quantize import nbytes, quantize_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(preset("test")).eval()


def test_quality_measures_are_exact_for_identical_models(model):
    data = torch.randint(0, model.config.vocab_size, (500,))
    prompts = prompt_set(data, n=3, length=8)
    assert prompts.shape == (3, 8)
    assert greedy_agreement(model, model, prompts, n_new=6) == 1.0
    same = val_loss(model, data, batches=2, batch_size=2, block_size=16)
    assert same == val_loss(model, data, batches=2, batch_size=2, block_size=16)
    assert val_loss(quantize_model(model, "fp32"), data, 2, 2, 16) == same


def test_width_sweep_rows_and_where_the_fused_path_pays():
    rows = width_sweep(widths=(16, 32), batches=(1, 4), repeats=3, target_s=1e-4)
    assert [(r["width"], r["batch"]) for r in rows] == [(16, 1), (16, 4), (32, 1), (32, 4)]
    for r in rows:
        for k in SWEEP_VARIANTS:
            assert r[f"{k} µs"] > 0
        lo, hi = r["int8 fused (PyTorch) vs fp32 spread"]
        assert lo <= r["int8 fused (PyTorch) vs fp32"] <= hi
    fake = [{"width": w, "batch": b, "int8 fused (PyTorch) vs fp32": s}
            for (w, b, s) in [(128, 1, 0.3), (512, 1, 1.2), (1024, 1, 0.9), (2048, 1, 2.5), (4096, 1, 3.0),
                              (128, 16, 0.5), (512, 16, 2.1), (1024, 16, 2.2), (2048, 16, 4.5), (4096, 16, 5.0)]]
    # "pays from width W" means at W and at every wider layer: 512 at batch 1 does not count, 1024 dips below 1
    assert first_paying(fake) == {1: 2048, 16: 512}
    assert first_paying(fake, at_least=2.0) == {1: 2048, 16: 512}
    assert first_paying(fake, at_least=4.0) == {1: None, 16: 2048}
    assert best_point(fake) == {"width": 4096, "batch": 16, "int8 fused (PyTorch) vs fp32": 5.0}


def test_agreement_is_read_along_the_references_own_continuation(model):
    data = torch.randint(0, model.config.vocab_size, (500,))
    prompts = prompt_set(data, n=2, length=6)
    seq, choices = agreement_text(model, prompts, n_new=5)
    assert seq.shape == (2, 6 + 5 - 1) and choices.shape == (2, 5)
    assert torch.equal(seq[:, 6:], choices[:, :-1])  # the text continues with the reference's own greedy picks
    assert torch.equal(greedy_choices(model, seq, 5), choices)


def test_variant_table_against_fp32(model):
    data = torch.randint(0, model.config.vocab_size, (2000,))
    models, notes = build(model, ["fp32", "int8", "int4 g32"], reference=False)
    assert list(models) == ["fp32", "int8", "int4 g32"] and models["fp32"] is model and notes == []
    m = MeasureConfig(val_batches=2, val_batch_size=2, val_block=16, n_prompts=2, prompt_len=8, agree_tokens=4)
    qual = quality(models, data, m)
    assert qual["fp32"]["agreement"] == 1.0
    assert qual["int8"]["val_loss"] == val_loss(models["int8"], data, 2, 2, 16)
    rows = {r["variant"]: r for r in table(models, qual)}
    assert rows["fp32"]["vs fp32 bytes"] == 1.0 and rows["fp32"]["val loss change"] == 0.0
    assert rows["int8"]["bytes"] == nbytes(models["int8"]) < rows["fp32"]["bytes"]


def test_agreement_on_a_text_computed_once(model):
    torch.manual_seed(1)
    other = GPT(preset("test")).eval()
    with torch.no_grad():  # large random weights: choices that differ from the reference's somewhere
        for p in other.parameters():
            p.normal_(0.0, 0.5)
    prompts = torch.randint(0, model.config.vocab_size, (3, 6))
    seq, choices = agreement_text(model, prompts, n_new=8)
    assert agreement_with(model, seq, choices) == 1.0
    assert agreement_with(other, seq, choices) == greedy_agreement(other, model, prompts, n_new=8) < 1.0
