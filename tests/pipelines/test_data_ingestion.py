"""``data_ingestion`` on an in-memory catalog."""

from __future__ import annotations

import numpy as np


def test_splits_sizes_and_normalisation_statistics(ingested):
    train, val, test, info = ingested["train_set"], ingested["val_set"], ingested["test_set"], ingested["dataset_info"]
    assert info["sizes"] == {"train": len(train["labels"]), "val": len(val["labels"]), "test": len(test["labels"])}
    assert info["num_classes"] == 10 and info["has_true_masks"] is True
    assert info["image_shape"] == [16, 16, 3]
    # The model's normalisation statistics are those of the training images (computed independently here).
    pixels = train["images"].astype(np.float64).reshape(-1, 3) / 255.0
    np.testing.assert_allclose(info["mean"], pixels.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(info["std"], pixels.std(axis=0), atol=1e-6)


def test_variants_show_the_test_digits(ingested):
    test, variants = ingested["test_set"], ingested["test_variants"]
    assert set(variants) == set(ingested["dataset_info"]["variants"]) and variants
    for name, variant in variants.items():
        np.testing.assert_array_equal(variant["labels"], test["labels"], err_msg=name)
    # Every variant draws the same digit in the same place, except the background alone (no digit at all).
    for name in sorted(set(variants) - {"test_background_only"}):
        np.testing.assert_array_equal(variants[name]["masks"], test["masks"], err_msg=name)
    assert not variants["test_background_only"]["masks"].any()
