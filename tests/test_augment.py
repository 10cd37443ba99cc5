"""Batched crop and flip and the random-resized crop (dhat.engine.augment): masks stay aligned with their images."""

import pytest
import torch

from dhat.engine.augment import (
    augment_batch,
    crop_resize,
    random_crop_flip,
    random_resized_crop_flip,
    resized_crop_boxes,
)
from dhat.engine.recipe import TrainingConfig


def test_mask_follows_its_image_through_crop_and_flip():
    torch.manual_seed(0)
    masks = torch.rand(64, 8, 8)
    images = torch.stack([masks, 1 - masks, torch.zeros_like(masks)], dim=1)
    out_images, out_masks = random_crop_flip(images, masks, padding=3, flip=True)
    assert torch.equal(out_images[:, 0], out_masks)
    # Zero padding: channel 1 is 0 exactly where the crop reached into the padding.
    assert torch.equal(out_images[:, 1] == 0, (out_masks == 0) & (masks.min() > 0))


def test_four_dimensional_masks_keep_their_shape_and_alignment():
    torch.manual_seed(2)
    images = torch.rand(8, 2, 6, 6)
    out, masks = random_crop_flip(images, images[:, :1].clone(), padding=2, flip=True)
    assert masks.shape == (8, 1, 6, 6) and torch.equal(masks, out[:, :1])


def test_flip_only_gives_the_image_or_its_mirror():
    torch.manual_seed(1)
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5).repeat(20, 1, 1, 1)
    masks = images[:, 0].clone()
    out, out_masks = random_crop_flip(images, masks, padding=0, flip=True)
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, images, strict=True)])
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, images, strict=True)])
    assert torch.all(flipped ^ same)
    assert 0 < flipped.sum() < len(images)
    assert torch.equal(out[:, 0], out_masks)


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    image = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4)
    torch.manual_seed(3)
    out, masks = random_crop_flip(image.repeat(50, 1, 1, 1), None, padding=1, flip=False)
    assert masks is None
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1))[0, 0]
    windows = {tuple(padded[r : r + 4, c : c + 4].flatten().tolist()) for r in range(3) for c in range(3)}
    seen = {tuple(o[0].flatten().tolist()) for o in out}
    assert seen <= windows
    assert len(seen) > 3


def test_a_seeded_generator_repeats_the_draw_and_nothing_changes_without_augmentation():
    images = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    first, _ = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(9))
    again, _ = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, again) and not torch.equal(first, images)
    same, _ = random_crop_flip(images, padding=0, flip=False)
    assert torch.equal(same, images)


def test_negative_padding_is_an_error():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        random_crop_flip(torch.zeros(1, 1, 2, 2), None, padding=-1)


# ------------------------------------------------------------ random-resized crop (training.augment: resized_crop)


def test_resized_crop_boxes_fit_the_image_and_keep_to_the_scale_and_ratio():
    boxes = resized_crop_boxes(4000, 40, 60, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    top, left, h, w = boxes.T.double()
    assert torch.all((top >= 0) & (left >= 0) & (top + h <= 40) & (left + w <= 60) & (h > 0) & (w > 0))
    share, aspect = h * w / 2400, w / h
    # Whole-pixel rounding moves the share and the ratio a little off their ranges on small boxes.
    assert share.min() > 0.06 and share.max() <= 1.0 and aspect.min() > 0.7 and aspect.max() < 1.4
    # The same distribution as torchvision's own draw (4,000 boxes each: the means agree to sampling noise).
    transforms = pytest.importorskip("torchvision.transforms")
    torch.manual_seed(0)
    ref = torch.tensor([transforms.RandomResizedCrop.get_params(torch.zeros(1, 40, 60), [0.08, 1.0], [3 / 4, 4 / 3])
                        for _ in range(4000)], dtype=torch.float64)
    ref_share, ref_aspect = ref[:, 2] * ref[:, 3] / 2400, ref[:, 3] / ref[:, 2]
    assert abs(float(share.mean() - ref_share.mean())) < 0.02 and abs(float(aspect.mean() - ref_aspect.mean())) < 0.02
    assert abs(float((top / (40 - h + 1)).mean() - (ref[:, 0] / (40 - ref[:, 2] + 1)).mean())) < 0.03
    placed = boxes[(h < 20) & (w < 30)]
    assert len(set(placed[:, 0].tolist())) > 10 and len(set(placed[:, 1].tolist())) > 10  # placed uniformly


def test_without_a_fitting_box_the_central_crop_of_the_clamped_ratio_is_taken():
    boxes = resized_crop_boxes(50, 30, 30, (0.9, 1.0), (4.0, 5.0), torch.Generator().manual_seed(1))
    # Width 30 at ratio >= 4 fits only heights <= 7, area share <= 0.25 < 0.9: every try fails.
    assert torch.equal(boxes, torch.tensor([[(30 - 8) // 2, 0, 8, 30]] * 50))


def test_crop_resize_is_torchvisions_resized_crop_inside_the_box():
    v2f = pytest.importorskip("torchvision.transforms.v2.functional")
    images = torch.rand(5, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[0, 0, 24, 32], [3, 5, 12, 20], [10, 2, 14, 9], [1, 17, 6, 15], [0, 0, 24, 20]])
    out = crop_resize(images, boxes)
    for image, box, got in zip(images, boxes.tolist(), out, strict=True):
        ref = v2f.resized_crop(image, *box, size=[24, 32], interpolation=v2f.InterpolationMode.BILINEAR, antialias=False)
        # Output pixels whose source point lies between the box's outer pixel centres agree; the band outside
        # them reads the pixel beyond the box (documented), where torchvision repeats the box's edge.
        rows = (torch.arange(24) + 0.5) * box[2] / 24 - 0.5
        cols = (torch.arange(32) + 0.5) * box[3] / 32 - 0.5
        inside = ((rows >= 0) & (rows <= box[2] - 1))[:, None] & ((cols >= 0) & (cols <= box[3] - 1))[None, :]
        assert inside.sum() > 0.6 * inside.numel()
        assert torch.allclose(got[:, inside], ref[:, inside], atol=1e-5)
    assert torch.allclose(out[0], images[0], atol=1e-5)  # the whole image is the identity


def test_a_flipped_crop_is_the_mirror_of_the_unflipped_one():
    images = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor([[2, 3, 10, 12], [0, 0, 16, 16], [5, 1, 8, 8]])
    plain = crop_resize(images, boxes)
    mirrored = crop_resize(images, boxes, torch.tensor([True, False, True]))
    assert torch.allclose(mirrored[0], plain[0].flip(-1), atol=1e-5) and torch.equal(mirrored[1], plain[1])
    assert torch.allclose(mirrored[2], plain[2].flip(-1), atol=1e-5)


def test_masks_follow_their_images_through_the_resized_crop_and_the_draw_repeats():
    maps = torch.rand(32, 12, 12, generator=torch.Generator().manual_seed(4))
    images = torch.stack([maps, 1 - maps, torch.zeros_like(maps)], dim=1)
    out, out_maps = random_resized_crop_flip(images, maps, generator=torch.Generator().manual_seed(5))
    assert out.shape == images.shape and torch.allclose(out[:, 0], out_maps, atol=1e-6)
    again, _ = random_resized_crop_flip(images, maps, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, again) and not torch.allclose(out, images)


def test_the_recipe_picks_the_augmentation_and_checks_its_ranges_by_name():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    crop = TrainingConfig.from_dict({"crop_padding": 2, "flip": True})
    same, _ = augment_batch(images, None, crop, torch.Generator().manual_seed(7))
    expected, _ = random_crop_flip(images, None, padding=2, flip=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(same, expected)
    resized = TrainingConfig.from_dict({"augment": "resized_crop", "resized_crop_scale": [0.5, 1.0]})
    assert resized.resized_crop_scale == (0.5, 1.0)
    got, _ = augment_batch(images, None, resized, torch.Generator().manual_seed(7))
    want, _ = random_resized_crop_flip(images, None, (0.5, 1.0), (0.75, 4 / 3), False, torch.Generator().manual_seed(7))
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="training.augment must be one of crop_flip, resized_crop"):
        TrainingConfig.from_dict({"augment": "randaugment"})
    with pytest.raises(ValueError, match=r"training.resized_crop_scale must be \[low, high\]"):
        TrainingConfig.from_dict({"resized_crop_scale": [0.0, 1.0]})
    with pytest.raises(ValueError, match="training.resized_crop_ratio must be a pair"):
        TrainingConfig.from_dict({"resized_crop_ratio": 1.0})
