"""The regression suite's synthetic part (what CI runs): replayed now, every number
within its tolerance of the committed baseline; and the comparison itself flags a
number moved beyond its tolerance, names it, and lets float noise inside it pass."""

from __future__ import annotations

import copy

import pytest

from multimodal_perception.regress import compare, read_baseline, run_suite


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    return run_suite(tmp_path_factory.mktemp("regress"), None, real=False, log=lambda _: None)


def test_the_synthetic_suite_matches_the_committed_baseline(current):
    baseline = read_baseline()
    assert set(current) <= set(baseline), "run make regress-update and commit the baseline"
    beyond, _ = compare(baseline, current)
    assert not beyond, "\n".join(beyond)


def test_a_number_beyond_its_tolerance_is_named_and_noise_passes(current):
    changed = copy.deepcopy(current)
    bag = next(iter(changed))
    changed[bag]["recall"] -= 0.05  # a regression
    changed[bag]["ap50"] += 0.01  # cross-CPU noise
    changed[bag]["frames"] += 1  # frames are exact
    beyond, moved = compare(current, changed)
    assert len(moved) == 3
    assert sorted(line.split()[1] for line in beyond) == ["frames", "recall"], beyond
