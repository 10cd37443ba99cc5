"""One catalog entry per output of a unit, whatever pipeline the unit belongs to.

A *unit* is one namespace of a template: a method of ``train_eval`` (``dhat``), a
replicate of the study (``study_seed3.dhat``), a point of the sensitivity grid
(``sensitivity__lambda1__0p5``), a mask source (``mask_source__gradcam``) or a fresh
run of ``tune_test`` (``fresh_standard_seed200.dhat``). Each writes the same outputs
(``model_best``, ``history``, ``metrics``, ...), so the catalog declares each output
once::

    "{unit}.model_best":
      type: dhat.extras.datasets.UnitDataset
      unit: "{unit}"
      path: data/06_models
      file: model_best.pt
      dataset: {type: dhat.extras.datasets.TorchCheckpointDataset}
      versioned: true

and :func:`unit_folder` puts every unit in its own folder under ``path``
(``data/06_models/study/seed3/dhat/model_best.pt``). Kedro's placeholders cannot
turn the dots of a nested namespace into folders; this does, in one place.

Building a :class:`UnitDataset` returns the wrapped dataset itself (here a
:class:`~dhat.extras.datasets.TorchCheckpointDataset` with that ``filepath``), so the
catalog, versioning (``--load-versions``) and kedro-viz see the real dataset type.
"""

from __future__ import annotations

import re
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError, Version

__all__ = ["UnitDataset", "unit_folder"]

#: Namespace families whose flat names nest into folders, first match wins; any other
#: namespace is its own folder, one level per dot (``a.b`` -> ``a/b``).
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"study_seed(?P<seed>\d+)\.(?P<rest>.+)"), "study/seed{seed}/{rest}"),
    (re.compile(r"sensitivity__(?P<parameter>\w+?)__(?P<token>\w+)"), "sensitivity/{parameter}/{token}"),
    (re.compile(r"mask_source__(?P<source>\w+)"), "mask_sources/{source}"),
    (re.compile(r"fresh_(?P<protocol>\w+?)_seed(?P<seed>\d+)\.(?P<rest>.+)"), "tuning/fresh/{protocol}/seed{seed}/{rest}"),
)


def unit_folder(unit: str) -> str:
    """The folder, relative to the output kind's root, of the unit (namespace) ``unit``.

    >>> unit_folder("dhat"), unit_folder("study_seed3.dhat"), unit_folder("sensitivity__lambda1__0p5")
    ('dhat', 'study/seed3/dhat', 'sensitivity/lambda1/0p5')
    """
    if not unit or unit.startswith(".") or unit.endswith(".") or ".." in unit or "/" in unit:
        raise DatasetError(f"UnitDataset: {unit!r} is not a namespace (dotted names such as 'study_seed0.dhat')")
    for pattern, folder in _FAMILIES:
        match = pattern.fullmatch(unit)
        if match:
            return folder.format(**{k: v.replace(".", "/") for k, v in match.groupdict().items()})
    return unit.replace(".", "/")


class UnitDataset(AbstractDataset[Any, Any]):
    """Builds ``dataset`` with ``filepath = <path>/<unit_folder(unit)>/<file>`` and returns it.

    Args:
        unit: The unit's namespace (the catalog pattern's placeholder).
        path: Root folder of this output kind (Kedro makes it absolute, like every ``path``).
        file: The output's file name inside the unit's folder.
        dataset: Catalog entry of the dataset to build, without ``filepath`` (and without
            ``versioned``: version the ``UnitDataset`` entry itself).
        version: Set by Kedro when the entry says ``versioned: true``.
        metadata: Passed on to the built dataset's entry.
    """

    def __new__(  # noqa: PLR0913 - Kedro passes the catalog options as arguments
        cls,
        unit: str,
        path: str,
        file: str,
        dataset: dict[str, Any],
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AbstractDataset:
        if not isinstance(dataset, dict) or "type" not in dataset:
            raise DatasetError(f"UnitDataset {unit!r}: 'dataset' must be a catalog entry with a 'type', got {dataset!r}")
        clashes = sorted({"filepath", "versioned", "version"} & set(dataset))
        if clashes:
            raise DatasetError(f"UnitDataset {unit!r}: remove {clashes} from 'dataset' (the folder comes from 'path' and "
                               "the unit, versioning from the UnitDataset entry's own 'versioned')")
        if not file or "/" in file or "\\" in file:
            raise DatasetError(f"UnitDataset {unit!r}: 'file' must be a bare file name such as 'metrics.json', got {file!r}")
        config = {**dataset, "filepath": f"{str(path).rstrip('/')}/{unit_folder(unit)}/{file}"}
        if metadata is not None:
            config.setdefault("metadata", metadata)
        if version is None:
            return AbstractDataset.from_config(f"{unit}/{file}", config)
        return AbstractDataset.from_config(f"{unit}/{file}", {**config, "versioned": True}, version.load, version.save)
