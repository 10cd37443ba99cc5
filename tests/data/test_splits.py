"""Seeded, stratified subsets of image sets (dhat.data.splits)."""

from __future__ import annotations

import numpy as np
import pytest

from dhat.data.splits import concat_sets, index_set, set_size, split_train_val, stratified_indices, take_subset
from dhat.data.splits import validate_image_set as validate


def _toy_set(counts: list[int]) -> dict[str, np.ndarray]:
    """Labels with the given class counts; every other key encodes the sample id, to check rows stay aligned."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    ids = np.arange(len(labels))
    return {
        "images": np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None, None], (len(ids), 2, 2, 3)).copy(),
        "labels": labels,
        "masks": np.broadcast_to((ids % 256).astype(np.uint8)[:, None, None], (len(ids), 2, 2)).copy(),
        "ids": ids,
    }


def test_split_train_val_sizes_disjoint_and_stratified():
    data = _toy_set([40, 40, 20])
    train, val = split_train_val(data, val_size=10, seed=0)
    assert len(val["labels"]) == 10 and len(train["labels"]) == 90
    assert set(train["ids"]).isdisjoint(val["ids"])
    assert sorted(np.concatenate([train["ids"], val["ids"]])) == list(range(100))
    np.testing.assert_array_equal(np.bincount(val["labels"]), [4, 4, 2])
    for part in (train, val):
        assert set(part) == set(data)
        np.testing.assert_array_equal(part["labels"], data["labels"][part["ids"]])
        np.testing.assert_array_equal(part["images"][:, 0, 0, 0], part["ids"] % 256)
        np.testing.assert_array_equal(part["masks"][:, 1, 1], part["ids"] % 256)
    # A fraction gives the same count; a seed is deterministic; another seed differs.
    _, val_frac = split_train_val(data, val_size=0.1, seed=0)
    np.testing.assert_array_equal(val_frac["ids"], val["ids"])
    _, val_other = split_train_val(data, val_size=10, seed=1)
    assert not np.array_equal(val_other["ids"], val["ids"])


def test_split_train_val_errors():
    data = _toy_set([5, 5])
    for bad in (10, 1.5, -1, "3"):
        with pytest.raises(ValueError, match="val_size"):
            split_train_val(data, val_size=bad, seed=0)
    with pytest.raises(ValueError, match="same length"):
        split_train_val({"images": np.zeros((3, 2, 2, 3)), "labels": np.zeros(2, np.int64)}, 1, 0)
    with pytest.raises(ValueError, match="labels"):
        split_train_val({"images": np.zeros((3, 2, 2, 3))}, 1, 0)


def test_stratified_quota_rounds_to_nearest_counts():
    labels = np.repeat([0, 1, 2], [6, 3, 1])
    for seed in range(20):
        idx = stratified_indices(labels, 5, seed)
        counts = np.bincount(labels[idx], minlength=3)
        # Exact shares are 3, 1.5, 0.5: class 0 gets 3; the leftover unit goes to class 1 or 2.
        assert counts.sum() == 5 and counts[0] == 3 and sorted(counts[1:]) in ([1, 1], [0, 2]) and counts[1] >= 1
        assert len(set(idx)) == 5 and np.all(np.diff(idx) > 0)


def test_take_subset():
    data = _toy_set([30, 30, 30])
    for everything in (take_subset(data, None, seed=0), take_subset(data, 500, seed=0)):
        assert set(everything) == set(data)
        for key in data:
            np.testing.assert_array_equal(everything[key], data[key])
    sub = take_subset(data, 30, seed=4)
    np.testing.assert_array_equal(np.bincount(sub["labels"]), [10, 10, 10])
    np.testing.assert_array_equal(sub["ids"], take_subset(data, 30, seed=4)["ids"])
    plain = take_subset(data, 30, seed=4, stratified=False)
    assert len(np.unique(plain["ids"])) == 30 and np.all(np.diff(plain["ids"]) > 0)
    for part in (sub, plain):  # rows stay aligned with their labels, images and masks
        np.testing.assert_array_equal(part["labels"], data["labels"][part["ids"]])
        np.testing.assert_array_equal(part["images"][:, 1, 0, 2], part["ids"] % 256)
        np.testing.assert_array_equal(part["masks"][:, 0, 1], part["ids"] % 256)
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="subset size n"):
            take_subset(data, bad, seed=0)


def test_concat_sets():
    a, b = _toy_set([2, 1]), _toy_set([1, 1])
    both = concat_sets(a, b)
    np.testing.assert_array_equal(both["labels"], [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(both["ids"], [0, 1, 2, 0, 1])
    assert both["images"].shape == (5, 2, 2, 3) and both["images"].dtype == np.uint8
    np.testing.assert_array_equal(both["images"][:, 0, 0, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(both["masks"][:, 1, 0], [0, 1, 2, 0, 1])
    # b is cast to a's dtype when the kind agrees (int32 labels into an int64 set).
    cast = concat_sets(a, {**b, "labels": b["labels"].astype(np.int32)})
    assert cast["labels"].dtype == np.int64 and cast["labels"].tolist() == [0, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="masks"):
        concat_sets(a, {k: v for k, v in b.items() if k != "masks"})
    with pytest.raises(ValueError, match="images"):
        concat_sets(a, {**b, "images": np.zeros((2, 3, 3, 3), np.uint8)})
    with pytest.raises(ValueError, match="images"):
        concat_sets(a, {**b, "images": b["images"].astype(np.float32)})


def test_validate_image_set_and_set_size_name_the_problem():
    data = _toy_set([2, 3])
    assert validate(data) == 5 and set_size(data) == 5
    with pytest.raises(ValueError, match="train_set has no 'labels'"):
        validate({"images": data["images"]}, "train_set")
    with pytest.raises(ValueError, match=r"extra\['masks'\] must be a numpy array"):
        validate({**data, "masks": [1, 2, 3, 4, 5]}, "extra")
    with pytest.raises(ValueError, match="same length"):
        validate({**data, "masks": data["masks"][:4]})
    with pytest.raises(ValueError, match="1-D integer"):
        validate({**data, "labels": data["labels"].astype(np.float32)})
    with pytest.raises(ValueError, match="dict of numpy arrays"):
        validate([data["labels"]])


def test_index_set_takes_the_same_rows_of_every_array_as_copies():
    data = _toy_set([3, 3])
    picked = index_set(data, np.array([4, 0, 4]))
    np.testing.assert_array_equal(picked["ids"], [4, 0, 4])
    np.testing.assert_array_equal(picked["labels"], [1, 0, 1])
    np.testing.assert_array_equal(picked["images"][:, 0, 0, 0], [4, 0, 4])
    picked["images"][:] = 99
    assert data["images"].max() == 5  # the source set is untouched
