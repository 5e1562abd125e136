"""Known-answer tests of the bootstrap intervals and the verdict rule (vaelab.metrics.intervals)."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab.metrics import intervals as I


def test_bootstrap_coverage_of_a_known_mean_is_about_95_percent():
    # 400 independent data sets of n=200 draws with true mean 1.0: the 95 % interval should contain it ~95 % of
    # the time (binomial sd over 400 repeats: 1.1 %; percentile intervals under-cover slightly at small n)
    rng = np.random.default_rng(0)
    hits = 0
    for r in range(400):
        x = rng.exponential(1.0, size=200)           # skewed: the interval must not assume normality
        iv = I.mean_interval(x, n_boot=500, seed=r)
        hits += iv.low <= 1.0 <= iv.high
    assert 0.91 <= hits / 400 <= 0.98


def test_interval_width_is_the_normal_theory_width():
    rng = np.random.default_rng(1)
    for n in (400, 1600):
        x = rng.normal(size=n)
        assert I.mean_interval(x, seed=0).half_width == pytest.approx(1.96 * x.std() / np.sqrt(n), rel=0.1)


def test_same_seed_same_interval_and_indices_shared():
    x = np.arange(50.0)
    assert I.mean_interval(x, seed=3) == I.mean_interval(x, seed=3)
    assert I.mean_interval(x, seed=3) != I.mean_interval(x, seed=4)
    idx = I.bootstrap_indices(50, 10, seed=0)
    assert idx.shape == (10, 50) and idx.min() >= 0 and idx.max() < 50


def test_paired_difference_detects_a_small_shift_the_separate_intervals_hide():
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0, 5, size=300)          # per-image difficulty shared by both models
    a = difficulty + rng.normal(0, 0.1, size=300)
    b = a + 0.2                                      # model b is worse by 0.2 on every image
    ia, ib = I.mean_interval(a, seed=0), I.mean_interval(b, seed=0)
    assert ia.high > ib.low                          # the separate intervals overlap
    d = I.paired_difference(a, b, seed=0)
    assert d.low > 0.15 and d.high < 0.25
    assert I.verdict(d, "min") == "worse" and I.verdict(d, "max") == "better"


def test_verdict_no_difference_when_interval_contains_zero():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=100), rng.normal(size=100)
    d = I.paired_difference(a, a + 0.0 * b, seed=0)
    assert d.low == d.high == 0.0
    assert I.verdict(d, "min", n_test=100) == "no measurable difference on 100 test images"
    assert I.verdict({"low": -1.0, "high": 2.0}, "max", 7) == "no measurable difference on 7 test images"
    assert I.verdict({"low": None, "high": None}, "max") == "no measurable difference"
    with pytest.raises(ValueError):
        I.verdict(d, "lower")


def test_statistic_interval_of_an_accuracy_matches_the_binomial():
    rng = np.random.default_rng(4)
    correct = rng.random(1000) < 0.8
    iv = I.statistic_interval(lambda i: float(correct[i].mean()), 1000, seed=0)
    p = correct.mean()
    assert iv.value == pytest.approx(p)
    assert iv.half_width == pytest.approx(1.96 * np.sqrt(p * (1 - p) / 1000), rel=0.15)


def test_set_bootstrap_covers_the_true_value_and_pairs_on_the_reference():
    # the metric: difference of means of two sets (true value 0.5): known answer for the set bootstrap
    rng = np.random.default_rng(5)
    hits = 0
    for r in range(100):
        s, ref = rng.normal(0.5, 1, size=300), rng.normal(0, 1, size=300)
        iv, reps = I.set_bootstrap(lambda i, j: s[i].mean() - ref[j].mean(), 300, 300, n_boot=200, seed=r)
        hits += iv.low <= 0.5 <= iv.high
        assert len(reps) == 200
    assert 0.88 <= hits / 100 <= 1.0
    # paired on the shared reference: two sample sets against one reference, the difference's interval
    ref = rng.normal(0, 1, size=300)
    s1, s2 = rng.normal(0.5, 0.01, size=300), rng.normal(0.6, 0.01, size=300)
    a, ra = I.set_bootstrap(lambda i, j: s1[i].mean() - ref[j].mean(), 300, 300, seed=0)
    b, rb = I.set_bootstrap(lambda i, j: s2[i].mean() - ref[j].mean(), 300, 300, seed=0)
    d = I.paired_set_difference(a, ra, b, rb)
    assert a.half_width > 0.08 and d.half_width < 0.01   # the reference's noise cancels in the difference
    assert I.verdict(d, "max") == "better"


def test_seed_interval_and_combination():
    iv = I.seed_interval([1.0, 2.0, 3.0])
    assert iv.value == 2.0
    assert iv.half_width == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)   # t_{0.975, 2} = 4.3027
    per = [I.Interval(v, v - 0.3, v + 0.3, 0.95, "boot", 100) for v in (1.0, 2.0, 3.0)]
    c = I.combine_seeds(per)
    assert c["bootstrap"] == pytest.approx(0.3) and c["seeds"] == pytest.approx(iv.half_width)
    assert c["half_width"] == pytest.approx(np.hypot(0.3, iv.half_width))
    one = I.combine_seeds(per[:1])
    assert one["seeds"] is None and one["half_width"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        I.seed_interval([1.0])


def test_centred_interval_keeps_the_spread_and_drops_the_shift():
    """Resamples shifted by +5 (a Fréchet distance's are biased upwards): the interval sits about the value."""
    from vaelab.metrics.intervals import centred_interval, percentile_interval

    rng = np.random.default_rng(0)
    reps = 10.0 + 5.0 + rng.normal(0.0, 1.0, 20_000)
    plain = percentile_interval(10.0, reps)
    assert plain.low > 10.0                                     # the percentile interval excludes its own value
    c = centred_interval(10.0, reps)
    assert c.low < 10.0 < c.high
    assert c.high - c.low == pytest.approx(plain.high - plain.low, rel=1e-12)
    assert c.low == pytest.approx(10.0 - 1.96, abs=0.05) and c.high == pytest.approx(10.0 + 1.96, abs=0.05)
    assert centred_interval(0.5, reps - 14.0, lower_bound=0.0).low == 0.0     # a distance is never negative
