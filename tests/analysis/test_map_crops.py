"""The stored-map crop against Grad-CAM recomputed on the crop (dhat.analysis.map_crops)."""

from __future__ import annotations

import numpy as np
import torch

from dhat.analysis.map_crops import _correlation, crop_agreement
from dhat.checkpoints import load_classifier
from dhat.engine.fitting import fit
from tests.test_feature_maps import INFO, _data


def _model_and_images():
    images, labels = _data(48, seed=1)
    best, _, _ = fit({"images": images[:40], "labels": labels[:40]}, {"images": images[40:], "labels": labels[40:]},
                     None, INFO, {"name": "natural"}, {"name": "small_cnn", "width": 4},
                     {"epochs": 2, "batch_size": 8, "val_steps": 0, "select_on": "val_clean", "progress": False}, "cpu")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return load_classifier(best, "cpu"), x, torch.from_numpy(labels)


def test_the_whole_image_as_crop_makes_both_ways_agree_and_small_crops_differ():
    model, x, y = _model_and_images()
    table = crop_agreement(model, x, y, scales=(1.0, 0.08), ratio=(1.0, 1.0), batch_size=20)
    whole, small = table.iloc[0], table.iloc[1]
    assert list(table["n_images"]) == [48, 48]
    # Whole image: the two ways differ only by the stored maps' 1/255 rounding (and the identity resample's 1e-6).
    assert whole["map_correlation"] > 0.999 and whole["mean_abs_difference"] < 2.5 / 255
    assert whole["background_iou_absolute"] > 0.95 and whole["background_iou_quantile"] > 0.9
    assert small["map_correlation"] < whole["map_correlation"]
    assert 0 <= small["background_iou_quantile"] <= 1 and small["recomputed_ms_per_image"] > 0


def test_the_correlation_is_pearsons():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 5, 5)), rng.random((3, 5, 5))
    b[1] = 2 * a[1] + 1
    got = _correlation(torch.from_numpy(a), torch.from_numpy(b))
    want = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(3)]
    assert np.allclose(got.numpy(), want) and abs(float(got[1]) - 1) < 1e-12
    flat = torch.zeros(2, 4, 4)
    assert _correlation(flat, flat).tolist() == [1.0, 1.0]
