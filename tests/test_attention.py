"""Grad-CAM against a hand-derived map; foreground IoU and mask quantisation by hand (dhat.attention.gradcam)."""

import torch

from dhat.attention.gradcam import dequantize_masks, foreground_iou, grad_cam, grad_cam_batched, quantize_masks


def test_grad_cam_of_an_identity_backbone_is_the_min_max_normalised_image(identity_classifier):
    # features = x, logits = W * mean(x): dlogit_0/dfeature = 2 / (H W) everywhere, so the map is relu(x) up to scale.
    x = torch.tensor([[[[0.0, 0.2], [0.6, 1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    cam = grad_cam(identity_classifier, x, torch.tensor([0, 0]))
    assert torch.allclose(cam[0], torch.tensor([[0.0, 0.2], [0.6, 1.0]]), atol=1e-6)
    assert torch.equal(cam[1], torch.zeros(2, 2))  # constant map -> zeros
    # Class 1 has a negative weight: relu removes every pixel.
    assert torch.equal(grad_cam(identity_classifier, x[:1], torch.tensor([1]))[0], torch.zeros(2, 2))


def test_grad_cam_batched_equals_one_pass(identity_classifier):
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 0, 0, 1])
    expected = grad_cam(identity_classifier, x, target)
    assert torch.equal(grad_cam_batched(identity_classifier, x, target, batch_size=2), expected)
    # Class-0 maps are the min-max normalised images; class-1 maps are zero.
    flat = x[[0, 2, 3]].flatten(1)
    normalised = (flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values - flat.min(1, keepdim=True).values)
    assert torch.allclose(expected[[0, 2, 3]].flatten(1), normalised, atol=1e-6)
    assert not expected[[1, 4]].any()
    assert grad_cam_batched(identity_classifier, x[:0], target[:0]).shape == (0, 2, 2)


def test_foreground_iou_hand_computed():
    attention = torch.tensor([[[0.9, 0.1], [0.6, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    truth = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
    # Image 1: predicted {(0,0), (1,0)}, truth {(0,0), (0,1)} -> 1 / 3. Image 2: both empty -> 1.
    assert torch.allclose(foreground_iou(attention, truth, 0.5), torch.tensor([1 / 3, 1.0]))


def test_mask_quantisation_hand_values_and_round_trip():
    maps = torch.tensor([0.0, 0.2, 0.5, 1.0, -0.3, 1.7])
    stored = quantize_masks(maps)
    assert stored.dtype == torch.uint8
    # 0.2 * 255 = 51; 0.5 * 255 = 127.5 rounds to even 128; values outside [0, 1] are clamped first.
    assert stored.tolist() == [0, 51, 128, 255, 0, 255]
    assert torch.allclose(dequantize_masks(stored), torch.tensor([0.0, 51 / 255, 128 / 255, 1.0, 0.0, 1.0]))
    random_maps = torch.rand(5, 4, 4, generator=torch.Generator().manual_seed(0))
    assert (dequantize_masks(quantize_masks(random_maps)) - random_maps).abs().max() <= 0.5 / 255 + 1e-6
