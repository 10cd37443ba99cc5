"""Pre-trained mask models: loaded from files without running code, with their own normalisation and a class map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dhat.attention.gradcam import grad_cam
from dhat.attention.reference_model import MaskModelSettings, ResizedInput, class_indices, load_mask_model, map_model
from dhat.checkpoints import build_from_spec, load_classifier, make_checkpoint
from dhat.pipelines.mask_precomputation import nodes

INFO = {"class_names": ["cat", "ant", "bee"], "image_shape": [16, 16, 3], "mean": [0.5] * 3, "std": [0.2] * 3}
SPEC = {"name": "small_cnn", "num_classes": 4, "in_channels": 3, "mean": [0.1, 0.2, 0.3], "std": [0.9, 0.8, 0.7],
        "options": {"width": 4}}


@pytest.fixture()
def project_checkpoint(tmp_path):
    """A checkpoint of this project, trained on four classes (one the data does not have), saved to a file."""
    torch.manual_seed(0)
    model = build_from_spec(SPEC)
    path = tmp_path / "model.pt"
    torch.save(make_checkpoint(model.state_dict(), SPEC, class_names=["ant", "bee", "cat", "dog"]), path)
    return path, model.eval()


def _load(**settings):
    return load_mask_model(MaskModelSettings.from_dict(settings), INFO)


def test_a_project_checkpoint_keeps_its_normalisation_and_maps_the_data_classes_by_name(project_checkpoint):
    path, original = project_checkpoint
    checkpoint = _load(checkpoint=str(path))
    spec = checkpoint["metadata"]["model"]
    assert spec["mean"] == SPEC["mean"] and spec["std"] == SPEC["std"]  # its own, not the data's
    assert checkpoint["metadata"]["class_names"] == INFO["class_names"] and spec["num_classes"] == 3
    model = load_classifier(checkpoint)
    x = torch.rand(5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x)[:, [2, 0, 1]])  # cat, ant, bee in the data's label order
    # Grad-CAM of the data's class k is Grad-CAM of the original model's class for that name.
    target = torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(grad_cam(model, x, target), grad_cam(original, x, torch.tensor([2, 0, 1, 2, 0])))


def test_a_plain_state_dict_needs_its_architecture_and_its_normalisation(tmp_path):
    torch.manual_seed(1)
    model = build_from_spec({**SPEC, "num_classes": 3})
    state = {k: v for k, v in model.state_dict().items() if k not in ("mean", "std")}
    torch.save(state, tmp_path / "weights.pth")
    arch = {"name": "small_cnn", "width": 4}
    with pytest.raises(ValueError, match=r"mask_model\.normalization"):
        _load(checkpoint=str(tmp_path / "weights.pth"), model=arch)
    loaded = load_classifier(_load(checkpoint=str(tmp_path / "weights.pth"), model=arch,
                                   normalization={"mean": SPEC["mean"], "std": SPEC["std"]}))
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))  # three classes, no names: taken in order
    with pytest.raises(ValueError, match="weights do not fit"):
        _load(checkpoint=str(tmp_path / "weights.pth"), model={"name": "small_cnn", "width": 8},
              normalization={"mean": SPEC["mean"], "std": SPEC["std"]})


def test_files_that_would_run_code_are_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, not weights
    with pytest.raises(ValueError, match=r"mask_model\.checkpoint=.*cannot be read as weights"):
        _load(checkpoint=str(tmp_path / "module.pt"))
    with pytest.raises(ValueError, match=r"mask_model\.checkpoint=.*is not a file"):
        MaskModelSettings.from_dict({"checkpoint": str(tmp_path / "missing.pt")})


def test_timm_weights_from_a_local_file_become_a_classifier_of_the_data_classes(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False).eval()
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    info = {**INFO, "class_names": ["goldfish", "n01440764"]}  # an ImageNet name and an ImageNet synset
    checkpoint = load_mask_model(MaskModelSettings.from_dict(
        {"pretrained": "resnet18", "checkpoint": str(tmp_path / "resnet18.pth")}), info)
    spec = checkpoint["metadata"]["model"]
    assert spec["mean"] == [0.485, 0.456, 0.406] and spec["num_classes"] == 2  # ImageNet normalisation kept
    assert checkpoint["metadata"]["origin"]["class_map"] == {"goldfish": "n01443537", "n01440764": "n01440764"}
    model = load_classifier(checkpoint)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - model.mean) / model.std)[:, [1, 0]], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"mask_model\.class_map"):
        load_mask_model(MaskModelSettings.from_dict(
            {"pretrained": "resnet18", "checkpoint": str(tmp_path / "resnet18.pth")}), {**INFO, "class_names": ["airplane"]})


def test_an_unreachable_hub_names_the_offline_way(monkeypatch):
    timm = pytest.importorskip("timm")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ValueError, match=r"Hugging Face hub.*mask_model\.checkpoint: <file> with mask_model\.pretrained"):
        _load(pretrained="resnet18.a1_in1k")


@pytest.mark.parametrize(
    ("class_map", "model_classes", "expected"),
    [
        ({"cat": 3, "ant": 0, "bee": "bee"}, ["ant", "bee", "x", "y"], [3, 0, 1]),
        (None, ["bee", "cat", "ant"], [1, 2, 0]),
        (None, None, [0, 1, 2]),
    ],
)
def test_class_indices(class_map, model_classes, expected):
    assert class_indices(["cat", "ant", "bee"], model_classes, 4 if model_classes and len(model_classes) == 4 else 3,
                         class_map) == expected


def test_class_map_errors_name_the_key():
    with pytest.raises(ValueError, match="no entry for the data's class"):
        class_indices(["cat", "ant"], None, 5, {"cat": 1})
    with pytest.raises(ValueError, match=r"class index in \[0, 5\)"):
        class_indices(["cat"], None, 5, {"cat": 9})
    with pytest.raises(ValueError, match="5 classes and no class names"):
        class_indices(["cat"], None, 5, None)


def test_a_resized_input_gives_maps_at_the_images_size_and_a_1x1_feature_map_is_refused(project_checkpoint):
    path, _ = project_checkpoint
    checkpoint = _load(checkpoint=str(path))
    with pytest.raises(ValueError, match=r"1x1 on 4x4 images.*mask_model\.input_size"):
        map_model(checkpoint, MaskModelSettings.from_dict({}), [4, 4, 3], "cpu")
    model = map_model(checkpoint, MaskModelSettings.from_dict({"input_size": 16}), [4, 4, 3], "cpu")
    assert isinstance(model, ResizedInput)
    maps = grad_cam(model, torch.rand(3, 3, 4, 4), torch.tensor([0, 1, 2]))
    assert maps.shape == (3, 4, 4) and float(maps.max()) <= 1.0


def test_the_mask_model_node_loads_instead_of_training(project_checkpoint, monkeypatch):
    path, _ = project_checkpoint
    monkeypatch.setattr(nodes, "fit", lambda *a, **k: pytest.fail("a loaded mask model must not be trained"))
    rng = np.random.default_rng(0)
    val = {"images": rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8), "labels": np.array([0, 1, 2] * 3)}
    checkpoint, history = nodes.train_mask_model(val, val, INFO, {"checkpoint": str(path), "batch_size": 4}, "cpu", "x")
    model = load_classifier(checkpoint)
    with torch.no_grad():
        expected = 100 * float((model(torch.from_numpy(val["images"]).permute(0, 3, 1, 2).float() / 255).argmax(1)
                                == torch.from_numpy(val["labels"])).float().mean())
    assert isinstance(history, pd.DataFrame) and history["val_clean"].tolist() == pytest.approx([expected])
    assert history["loaded_from"].tolist() == [str(path)] and checkpoint["metadata"]["checkpoint"] == "pretrained"
