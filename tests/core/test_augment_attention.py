"""Augmentation keeps masks aligned; Grad-CAM matches a hand-derived map."""

import pytest
import torch

from dhat.attention import dequantize_masks, foreground_iou, grad_cam, quantize_masks
from dhat.augment import random_crop_flip


def test_mask_follows_its_image_through_crop_and_flip():
    torch.manual_seed(0)
    masks = torch.rand(64, 8, 8)
    images = torch.stack([masks, 1 - masks, torch.zeros_like(masks)], dim=1)
    out_images, out_masks = random_crop_flip(images, masks, padding=3, flip=True)
    assert torch.equal(out_images[:, 0], out_masks)
    # Zero padding: channel 1 is 0 exactly where the crop reached into the padding.
    assert torch.equal(out_images[:, 1] == 0, (out_masks == 0) & (masks.min() > 0))


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
    out, _ = random_crop_flip(image.repeat(50, 1, 1, 1), None, padding=1, flip=False)
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1))[0, 0]
    windows = {tuple(padded[r : r + 4, c : c + 4].flatten().tolist()) for r in range(3) for c in range(3)}
    assert all(tuple(o[0].flatten().tolist()) in windows for o in out)
    assert len({tuple(o[0].flatten().tolist()) for o in out}) > 3


def test_grad_cam_of_an_identity_backbone_is_the_min_max_normalised_image(identity_classifier):
    # features = x, logits = W * mean(x): dlogit_0/dfeature = 2 / (H W) everywhere, so the map is relu(x) up to scale.
    x = torch.tensor([[[[0.0, 0.2], [0.6, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    cam = grad_cam(identity_classifier, x, torch.tensor([0, 0]))
    assert torch.allclose(cam[0], torch.tensor([[0.0, 0.2], [0.6, 1.0]]), atol=1e-6)
    assert torch.equal(cam[1], torch.zeros(2, 2))  # constant map -> zeros
    # Class 1 has a negative weight: relu removes every pixel.
    assert torch.equal(grad_cam(identity_classifier, x[:1], torch.tensor([1]))[0], torch.zeros(2, 2))


def test_foreground_iou_hand_computed():
    attention = torch.tensor([[[0.9, 0.1], [0.6, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    truth = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
    # Image 1: predicted {(0,0), (1,0)}, truth {(0,0), (0,1)} -> 1 / 3. Image 2: both empty -> 1.
    assert torch.allclose(foreground_iou(attention, truth, 0.5), torch.tensor([1 / 3, 1.0]))


def test_mask_quantisation_round_trip():
    maps = torch.rand(5, 4, 4)
    stored = quantize_masks(maps)
    assert stored.dtype == torch.uint8
    assert (dequantize_masks(stored) - maps).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError):
        random_crop_flip(torch.zeros(1, 1, 2, 2), None, padding=-1)
