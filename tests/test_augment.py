"""Batched crop and flip (dhat.engine.augment): masks stay aligned with their images."""

import pytest
import torch

from dhat.engine.augment import random_crop_flip


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
