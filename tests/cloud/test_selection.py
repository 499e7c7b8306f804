"""Which images to label (cloud/selection.py), on small synthetic embeddings: k-center covers
every cluster at least as tightly as random; near-duplicate consecutive frames are never both
chosen; uncertainty weighs rare classes up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.embeddings import crop_regions
from cloud.selection import (
    STRATEGIES,
    Frames,
    coverage_radius,
    image_uncertainty,
    k_center,
    missed_fault_candidates,
    select,
)


def clusters(seed: int, k: int = 8, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (k, d))
    sizes = rng.integers(5, 200, k)  # unequal: random picks crowd into the big ones
    x = np.concatenate([c + rng.normal(0, 0.5, (n, d)) for c, n in zip(centres, sizes, strict=True)])
    return x.astype(np.float32), np.repeat(np.arange(k), sizes)


@pytest.mark.parametrize("seed", range(5))
def test_k_center_picks_from_every_cluster_and_covers_at_least_as_tightly_as_random(seed):
    x, label = clusters(seed)
    picks = select("coreset", 12, emb=x, seed=seed)
    assert set(label[picks]) == set(range(8))
    rand = select("random", 12, emb=x, seed=seed)
    assert coverage_radius(x, picks) <= coverage_radius(x, rand)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["coreset", "uncertainty", "hybrid", "random"]),
       st.integers(1, 30))
def test_two_near_duplicate_consecutive_frames_are_never_both_chosen(seed, strategy, budget):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (20, 8)).astype(np.float32)
    x = np.repeat(base, 2, axis=0) + rng.normal(0, 1e-3, (40, 8)).astype(np.float32)  # frame pairs
    frames = Frames(np.array(["F1"] * 40), np.arange(40))
    unc = rng.random(40)
    picks = select(strategy, budget, emb=x, uncertainty=unc, frames=frames, seed=seed)
    chosen = set(picks.tolist())
    assert len(chosen) == len(picks) <= budget
    assert not any(2 * i in chosen and 2 * i + 1 in chosen for i in range(20))
    other_flight = select(strategy, 40, emb=x, uncertainty=unc, frames=Frames(np.arange(40), np.zeros(40, int)),
                          seed=seed)
    assert len(other_flight) == 40  # different flights: not duplicates, all may be chosen


def test_already_labelled_images_are_not_chosen_again_and_count_as_covered():
    x, _ = clusters(1)
    first = k_center(x, 8)
    more = k_center(x, 8, labelled=first)
    assert not set(first) & set(more)
    assert coverage_radius(x, np.concatenate([first, more])) <= coverage_radius(x, first)


def test_uncertainty_is_highest_near_one_half_and_rare_classes_weigh_more():
    conf = [np.array([0.5]), np.array([0.95]), np.array([0.5]), np.array([])]
    cls = [np.array([0]), np.array([0]), np.array([1]), np.array([], int)]
    many_insulators = conf + [np.array([0.5, 0.5, 0.5])]
    u = image_uncertainty(many_insulators, cls + [np.array([0, 0, 0])], 3)
    assert u[0] > u[1] and u[3] == 0 and u[2] > u[0]  # class 1 is rarer among the predictions
    assert list(select("uncertainty", 2, uncertainty=u)) == [2, 0]  # ties keep their order
    assert sorted(select("random", 3, n=10, seed=4)) == sorted(set(select("random", 3, n=10, seed=4)))
    assert len(select("random", 3, n=10)) == 3
    with pytest.raises(ValueError, match="needs embeddings"):
        select("coreset", 2, uncertainty=u)
    with pytest.raises(ValueError, match="strategy"):
        select("greedy", 2, emb=np.zeros((3, 2)))


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=40), st.integers(0, 10))
@settings(max_examples=60, deadline=None)
def test_missed_fault_reviews_come_only_from_unsure_photos_that_raised_nothing(photos, k):
    unc = np.array([u for u, _ in photos])
    top = np.array([t for _, t in photos])
    exclude = np.arange(0, len(photos), 3)
    got = missed_fault_candidates(unc, top, k, 0.5, exclude)
    assert len(got) <= k and len(set(got.tolist())) == len(got)
    assert all(top[i] < 0.5 and unc[i] > 0 and i not in exclude for i in got)
    assert np.all(np.diff(unc[got]) <= 0)  # most uncertain first
    eligible = [i for i in range(len(photos)) if top[i] < 0.5 and unc[i] > 0 and i not in exclude]
    assert len(got) == min(k, len(eligible))
    if got.size and len(eligible) > len(got):  # nothing left out was more uncertain than what was taken
        assert unc[[i for i in eligible if i not in got]].max() <= unc[got].min()


def test_faults_uncertainty_ignores_the_insulators_and_crops_is_k_center_on_the_crops():
    conf = [np.array([0.5, 0.97]), np.array([0.6]), np.array([0.5])]
    cls = [np.array([0, 1]), np.array([1]), np.array([0])]
    u = image_uncertainty(conf, cls, 3, only=[1, 2])
    assert u[2] == 0  # an insulator at 0.5 alone says nothing about faults
    assert u[1] > u[0] > 0  # the fault at 0.6 is less sure than the one at 0.97
    assert list(select("faults", 2, uncertainty=u)) == [1, 0]
    x, _ = clusters(3)
    assert list(select("crops", 9, emb=x, seed=2)) == list(k_center(x, 9, seed=2))
    with pytest.raises(ValueError, match="needs embeddings"):
        select("crops", 2, uncertainty=u)
    from cloud.api.routes.campaigns import Selection
    from cloud.cli import learning as cli
    from cloud.selection import DEFAULT_STRATEGY

    assert cli.SELECT_STRATEGIES == STRATEGIES and cli.DEFAULT_STRATEGY == DEFAULT_STRATEGY
    assert Selection(budget=3).strategy == DEFAULT_STRATEGY
    assert {Selection(budget=3, strategy=s).strategy for s in STRATEGIES} == set(STRATEGIES)
    with pytest.raises(ValueError):
        Selection(budget=3, strategy="greedy")


@given(st.integers(8, 400), st.integers(8, 400), st.floats(0, 1), st.floats(0, 1), st.floats(0.5, 200),
       st.floats(0.5, 200), st.floats(0, 1))
@settings(max_examples=200, deadline=None)
def test_a_crop_is_a_square_inside_the_photo_around_its_box(h, w, fx, fy, bw, bh, margin):
    x0, y0 = fx * (w - 1), fy * (h - 1)
    box = np.array([[x0, y0, min(w, x0 + bw), min(h, y0 + bh)]])
    (cx0, cy0, cx1, cy1), = crop_regions(box, (h, w), margin, min_side=32)
    assert 0 <= cx0 < cx1 <= w and 0 <= cy0 < cy1 <= h
    assert abs((cx1 - cx0) - (cy1 - cy0)) <= 1  # square, up to rounding
    side = cx1 - cx0
    assert side >= min(32, h, w) - 1
    centre = ((box[0, 0] + box[0, 2]) / 2, (box[0, 1] + box[0, 3]) / 2)
    assert cx0 - 1 <= centre[0] <= cx1 + 1 and cy0 - 1 <= centre[1] <= cy1 + 1
    longer = max(box[0, 2] - box[0, 0], box[0, 3] - box[0, 1])
    if longer * (1 + 2 * margin) <= min(h, w):  # room for the widened box: all of it is in the crop
        assert cx0 - 1 <= box[0, 0] and box[0, 2] <= cx1 + 1 and cy0 - 1 <= box[0, 1] and box[0, 3] <= cy1 + 1
