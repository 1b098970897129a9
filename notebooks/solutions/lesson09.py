"""Reference solutions of lesson 09's code exercises (09_lifecycle_costs.ipynb)."""
import math


def break_even_day(training_usd, daily_usd, retrain_every_days=0.0):
    """The day cumulative inference spend reaches cumulative training spend; math.inf if it never does."""
    if daily_usd == 0:
        return math.inf
    day = training_usd / daily_usd
    if retrain_every_days == 0 or day < retrain_every_days:
        return day
    return math.inf  # every retraining adds a full bill before inference can catch up: it never does


def training_share(queries_per_day, usd_per_query, training_usd, lifetime_days, retrain_every_days=0.0):
    """Training's fraction of the lifetime bill (every run that starts within the lifetime counts)."""
    runs = 1 if retrain_every_days == 0 else math.ceil(lifetime_days / retrain_every_days)
    training = runs * training_usd
    inference = queries_per_day * usd_per_query * lifetime_days
    return training / (training + inference)
