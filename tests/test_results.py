"""The results ledger and the claims table: round trips, and missing or corrupt files never crash a lesson."""
import json
import math

import pytest

from lifecycle import results


@pytest.fixture
def ledger(tmp_path):
    return tmp_path / "results.json"


def test_record_get_round_trip(ledger):
    entry = results.record("decode.tokens_per_s", 123.5, "tok/s", lesson="03_inference", what="greedy decode",
                           path=ledger)
    assert entry["value"] == 123.5 and entry["unit"] == "tok/s" and entry["machine"] and entry["when"]
    results.record("train.mfu", 0.12, "fraction", lesson="01_training", what="MFU", path=ledger)
    assert results.get("decode.tokens_per_s", path=ledger) == 123.5
    assert results.entries(ledger)["train.mfu"]["lesson"] == "01_training"
    assert [r["key"] for r in results.table(ledger)] == ["train.mfu", "decode.tokens_per_s"]  # lesson order
    results.record("train.mfu", 0.2, "fraction", lesson="01_training", what="MFU again", path=ledger)
    assert results.get("train.mfu", path=ledger) == 0.2  # a re-run replaces the old figure
    assert json.loads(ledger.read_text())["train.mfu"]["what"] == "MFU again"


def test_missing_ledger_is_empty_and_get_falls_back(ledger):
    assert results.entries(ledger) == {}
    assert results.get("speculative.speedup", 1.0, path=ledger) == 1.0
    assert results.get("speculative.speedup", path=ledger) is None
    assert results.table(ledger) == []


@pytest.mark.parametrize("text", [
    "{not json",
    "[1, 2, 3]",
])
def test_corrupt_ledger_warns_is_set_aside_and_recording_goes_on(ledger, text):
    ledger.write_text(text)
    with pytest.warns(UserWarning, match="unreadable"):
        assert results.entries(ledger) == {}
    aside = list(ledger.parent.glob("results.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == text  # kept, never deleted
    assert not ledger.exists()
    results.record("train.mfu", 0.3, "fraction", lesson="01_training", what="MFU", path=ledger)
    assert results.get("train.mfu", path=ledger) == 0.3


def test_binary_garbage_is_handled(ledger):
    ledger.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        assert results.get("train.mfu", 7.0, path=ledger) == 7.0


@pytest.mark.parametrize("value", [math.nan, math.inf, "1.0", None, True])
def test_record_rejects_non_numbers(ledger, value):
    with pytest.raises(ValueError, match="train.mfu"):
        results.record("train.mfu", value, "fraction", lesson="01_training", what="MFU", path=ledger)
    assert not ledger.exists()


@pytest.mark.filterwarnings("ignore:results.record_claim:DeprecationWarning")
def test_claims_round_trip_and_order(tmp_path):
    """The deprecated typed-verdict API still reads and writes (new code uses check_claim, tests/test_claims.py)."""
    path = tmp_path / "claims.json"
    results.record_claim("lifecycle.seed_daily_cost", lesson="09_lifecycle_costs", claim="c", measured="m",
                         verdict="reproduced", path=path)
    results.record_claim("training.flops_6ND", lesson="01_training", claim="c", measured="m",
                         verdict="holds under stated assumptions", why="w", path=path)
    rows = results.claims(path)
    assert [r["id"] for r in rows] == ["training.flops_6ND", "lifecycle.seed_daily_cost"]
    assert rows[0]["why"] == "w" and rows[1]["verdict"] == "reproduced"
    with pytest.raises(ValueError, match="verdict"):
        results.record_claim("x", lesson="09", claim="c", measured="m", verdict="sort of", path=path)


def test_corrupt_claims_file_warns_and_starts_empty(tmp_path):
    path = tmp_path / "claims.json"
    path.write_text("{oops")
    with pytest.warns(UserWarning, match="unreadable"):
        assert results.claims(path) == []
    path.write_text('{"a": [1], "b": {"lesson": "02", "verdict": "reproduced"}}')  # a stray non-row is skipped
    assert [r["id"] for r in results.claims(path)] == ["b"]


def test_default_location_follows_the_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_CACHE", str(tmp_path))
    results.record("x.y", 1.0, "x", lesson="00", what="w")
    assert results.ledger_path() == tmp_path / "results.json" and results.get("x.y") == 1.0


# --- regression tests (issue 15): the ledger never loses measurements ---------------------------------------------

GOOD = {"value": 2.5, "unit": "x", "lesson": "05_batching", "what": "speedup"}


@pytest.mark.parametrize("bad", [0.3, {"unit": "fraction"}, {"value": "fast"}, {"value": float("nan")},
                                 {"value": True}])
def test_one_bad_entry_sets_aside_only_itself(ledger, bad):
    ledger.write_text(json.dumps({"batching.speedup": GOOD, "train.mfu": bad}))
    with pytest.warns(UserWarning, match=r"1 unreadable entries \['train.mfu'\].*other 1 entries are kept"):
        assert results.entries(ledger) == {"batching.speedup": GOOD}
    aside = list(ledger.parent.glob("results.json.bad-entries-*"))
    assert len(aside) == 1
    kept = json.loads(aside[0].read_text())
    assert list(kept) == ["train.mfu"] and (kept["train.mfu"] == bad or isinstance(bad, dict) and
                                            math.isnan(kept["train.mfu"]["value"]))
    results.record("train.mfu", 0.3, "fraction", lesson="01_training", what="MFU", path=ledger)
    assert results.get("batching.speedup", path=ledger) == 2.5 and results.get("train.mfu", path=ledger) == 0.3


def test_two_set_asides_in_the_same_second_keep_both_files(ledger, monkeypatch):
    monkeypatch.setattr(results.time, "time", lambda: 1_700_000_000.0)  # both happen in one second
    for text in ("{first broken", "{second broken"):
        ledger.write_text(text)
        with pytest.warns(UserWarning, match="unreadable"):
            results.entries(ledger)
    aside = sorted(p.read_text() for p in ledger.parent.glob("results.json.corrupt-*"))
    assert aside == ["{first broken", "{second broken"]
