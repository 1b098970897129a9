"""Lesson 09 exercises: when inference spending overtakes training, and training's share of the lifetime bill.

- `break_even_day(training_usd, daily_usd, retrain_every_days)`: the day cumulative inference spend reaches
  cumulative training spend, `math.inf` if it never does (checked against `costs.break_even_day`).
- `training_share(queries_per_day, usd_per_query, training_usd, lifetime_days, retrain_every_days)`: training's
  fraction of the lifetime bill, counting every retraining run that starts within the lifetime (checked against
  `costs.lifecycle_summary`).
"""
from __future__ import annotations

import math

from .. import costs
from ..checks import is_number
from . import Case, check_function


def library_training_share(queries_per_day, usd_per_query, training_usd, lifetime_days, retrain_every_days=0.0):
    """The reference, from the library's Scenario: a million tokens per query at `usd_per_query` per million."""
    return costs.lifecycle_summary(queries_per_day=queries_per_day, tokens_per_query=1e6,
                                   usd_per_million_tokens=usd_per_query, training_usd=training_usd,
                                   lifetime_days=lifetime_days, retrain_every_days=retrain_every_days
                                   )["training_share"]


def _same_day(got, want):
    if isinstance(want, float) and math.isinf(want):
        return None if isinstance(got, (int, float)) and got == math.inf else \
            f"the result is {got!r}, expected math.inf (inference never catches up)"
    if not is_number(got):
        return f"the result should be a number of days, got {type(got).__name__}"
    return None if math.isclose(got, want, rel_tol=1e-9) else f"the result is {got!r}, expected {want!r}"


def check_break_even_day(fn) -> bool | None:
    """`fn(training_usd, daily_usd, retrain_every_days) -> float` (days, or math.inf) against the library."""
    cases = [Case("$2M training, $2,000 a day, never retrained", (2e6, 2e3, 0.0)),
             Case("$60M training, $10,000 a day, never retrained", (60e6, 1e4, 0.0)),
             Case("$1M training, $5,000 a day, retrained every 365 days (caught up in the first year)",
                  (1e6, 5e3, 365.0)),
             Case("$2M training, $2,000 a day, retrained every 365 days (each year adds more training than "
                  "inference)", (2e6, 2e3, 365.0)),
             Case("no traffic: $0 a day", (5e5, 0.0, 0.0)),
             Case("a cheap fine-tune: $300 against $1,000 a day", (300.0, 1e3, 0.0))]
    return check_function("break_even_day", fn, reference=costs.break_even_day, cases=cases, compare=_same_day,
                          hint="without retraining it is training / daily (and math.inf when nothing is spent per "
                               "day). With retraining every R days, training steps up by the same bill at R, 2R, "
                               "...: inference must catch up before the first retraining, or it never does.")


def check_training_share(fn) -> bool | None:
    """`fn(queries_per_day, usd_per_query, training_usd, lifetime_days, retrain_every_days) -> float`."""
    cases = [Case("the seed: 1M queries/day at $0.01, a $60M run, two years", (1e6, 0.01, 60e6, 730, 0)),
             Case("retrained every year for three years", (1e6, 0.01, 60e6, 1095, 365)),
             Case("retrained every 200 days for 730 days (the 4th run starts on day 600)", (2e5, 0.02, 5e6, 730, 200)),
             Case("a retraining period longer than the lifetime (one run only)", (1e5, 0.01, 1e6, 365, 500)),
             Case("no traffic: training is all of the bill", (0.0, 0.01, 1e6, 365, 0))]
    return check_function("training_share", fn, reference=library_training_share, cases=cases, rtol=1e-9,
                          hint="count the runs: the first at day 0 plus one every R days that STARTS before the "
                               "lifetime ends (math.ceil(lifetime / R); 1 when R is 0). Training = runs × bill; "
                               "inference = queries/day × $/query × lifetime days; return training / (training + "
                               "inference).")


EXERCISES = {"break_even_day": check_break_even_day, "training_share": check_training_share}
