"""Data layer: the embedded benchmark, external sources and seeded splits.

Every function works on *image sets*: ``dict[str, np.ndarray]`` with ``images``
uint8 ``[N, H, W, 3]``, ``labels`` int64 ``[N]`` and optional per-sample keys
(``masks`` uint8 ``[N, H, W]`` with 255 = foreground, ``styles`` int64 ``[N]``).
"""

from dhat.data.embedded import DIGIT_CLASS_NAMES, make_digit_texture_benchmark
from dhat.data.sources import (
    CIFAR_FOLDERS,
    IMAGE_EXTENSIONS,
    load_extra_npz,
    load_image_folder,
    load_torchvision_cifar,
)
from dhat.data.splits import (
    concat_sets,
    index_set,
    set_size,
    split_train_val,
    stratified_indices,
    take_subset,
    validate_image_set,
)
from dhat.data.textures import NUM_STYLES, STYLE_NAMES, render_textures

__all__ = [
    "DIGIT_CLASS_NAMES",
    "NUM_STYLES",
    "STYLE_NAMES",
    "make_digit_texture_benchmark",
    "render_textures",
    "CIFAR_FOLDERS",
    "IMAGE_EXTENSIONS",
    "load_extra_npz",
    "load_image_folder",
    "load_torchvision_cifar",
    "concat_sets",
    "index_set",
    "set_size",
    "split_train_val",
    "stratified_indices",
    "take_subset",
    "validate_image_set",
]
