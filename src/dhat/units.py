"""A pipeline's independent units, and one unit run alone: for SLURM job arrays and schedulers without Dask.

    python -m dhat.units list --pipeline study [--env ENV]
    python -m dhat.units run --pipeline study --stage 1 --task 3 [--env ENV] [--params k=v,...]

A *unit* is the nodes of one namespace (a study's ``study_seed0.dhat``: its training,
evaluation and analyses), or one node outside every namespace (data ingestion, the
aggregation). Units depend on each other through the datasets they exchange on disk; a
unit's *stage* is the length of the longest chain of units before it, so the units of one stage
are independent of each other and can run at the same time, each as its own job, once the
stages before have finished (``sbatch --array`` per stage, each array waiting for the
previous: ``docs/cluster.md``).

``run`` runs the unit's nodes whose persisted outputs are missing, and everything after them
inside the unit: a unit that finished does nothing, a unit that was killed resumes (a training
node from its last saved epoch).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedro.pipeline import Pipeline

from dhat.tracking import mlflow_runs_closed

__all__ = ["Unit", "memory_datasets_between_nodes", "pipeline_units", "run_unit", "units_of"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One unit: its position in the listing, its name (a namespace or a node), its stage and its nodes."""

    index: int
    name: str
    stage: int
    nodes: tuple[str, ...]


def pipeline_units(pipeline: Pipeline, in_memory: set[str] | frozenset[str] = frozenset()) -> list[Unit]:
    """The units of ``pipeline`` in stage order (then by name); see the module docstring.

    ``in_memory`` names the datasets that live only in memory (no catalog entry that persists
    them): a node that writes one and the nodes that read it must run in one process, so their
    units are merged into one (named after the first of them).
    """
    key_of = {node: node.namespace or node.name for node in pipeline.nodes}
    for name in sorted(in_memory):
        joined = [n for n in pipeline.nodes if name in n.outputs or name in n.inputs]
        keys = sorted({key_of[n] for n in joined})
        for node, key in list(key_of.items()):
            if key in keys[1:]:
                key_of[node] = keys[0]
    members: dict[str, list[str]] = {}
    for node, key in key_of.items():
        members.setdefault(key, []).append(node.name)
    needs: dict[str, set[str]] = {key: set() for key in members}
    for node, parents in pipeline.node_dependencies.items():
        needs[key_of[node]].update(key_of[p] for p in parents if key_of[p] != key_of[node])
    stage: dict[str, int] = {}

    def depth(key: str, path: tuple[str, ...] = ()) -> int:
        if key in path:
            raise ValueError(f"the units {' -> '.join((*path, key))} depend on each other in a cycle; a unit must "
                             "be a namespace whose nodes other namespaces only read from or write to")
        if key not in stage:
            stage[key] = 1 + max((depth(k, (*path, key)) for k in needs[key]), default=-1)
        return stage[key]

    for key in members:
        depth(key)
    ordered = sorted(members, key=lambda k: (stage[k], k))
    return [Unit(i, key, stage[key], tuple(sorted(members[key]))) for i, key in enumerate(ordered)]


def memory_datasets_between_nodes(pipeline: Pipeline, catalog: Any) -> list[str]:
    """Datasets that one node of ``pipeline`` writes and another reads but that live only in memory.

    Such a dataset cannot pass between processes: its nodes form one unit here, and the Dask
    runner refuses it. Parameters are values, not outputs, and travel with the node.
    """
    from kedro.io import MemoryDataset  # noqa: PLC0415

    produced = {name for node in pipeline.nodes for name in node.outputs}
    consumed = {name for node in pipeline.nodes for name in node.inputs}
    return [name for name in sorted(produced & consumed)
            if isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)]


def units_of(pipeline_name: str, catalog: Any) -> list[Unit]:
    """The units of a registered pipeline with ``catalog``'s in-memory datasets (the project must be bootstrapped)."""
    from kedro.framework.project import pipelines  # noqa: PLC0415

    if pipeline_name not in pipelines:
        raise ValueError(f"no pipeline {pipeline_name!r}; choose from {', '.join(sorted(pipelines))}")
    return pipeline_units(pipelines[pipeline_name], set(memory_datasets_between_nodes(pipelines[pipeline_name], catalog)))


def _select(units: Sequence[Unit], unit: int | None, stage: int | None, task: int | None) -> Unit:
    if unit is not None:
        if not 0 <= unit < len(units):
            raise ValueError(f"--unit {unit} is out of range: the pipeline has units 0..{len(units) - 1}")
        return units[unit]
    if stage is None or task is None:
        raise ValueError("give --unit I, or --stage S with --task I (the I-th unit of stage S, from 0)")
    in_stage = [u for u in units if u.stage == stage]
    if not 0 <= task < len(in_stage):
        raise ValueError(f"--task {task} is out of range: stage {stage} has {len(in_stage)} units")
    return in_stage[task]


def run_unit(project: str | os.PathLike[str], pipeline_name: str, unit: int | None = None, stage: int | None = None,
             task: int | None = None, env: str | None = None, params: dict[str, Any] | None = None,
             conf_source: str | None = None, package_root: str | os.PathLike[str] | None = None) -> list[str]:
    """Run one unit of ``pipeline_name`` in ``project``: its nodes with missing outputs and what follows them.

    ``conf_source`` and ``package_root`` (where ``pyproject.toml`` names the package; default
    ``project``) let the data root differ from the repository, as in the tests. Returns the
    names of the nodes that ran (none for a unit that has finished).
    """
    import kedro.framework.project as kedro_project  # noqa: PLC0415
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415
    from kedro.runner import SequentialRunner  # noqa: PLC0415

    if env:
        os.environ["KEDRO_ENV"] = env  # the study's seeds and the tuning's methods make the namespaces
    bootstrap_project(Path(package_root or project))  # cheap again: the registry keeps its last build
    pipelines = kedro_project.pipelines

    with mlflow_runs_closed(), KedroSession.create(project_path=Path(project), env=env, runtime_params=params,
                                                   conf_source=conf_source) as session:
        catalog = session.load_context().catalog
        chosen = _select(units_of(pipeline_name, catalog), unit, stage, task)
        piece = pipelines[pipeline_name].filter(node_names=list(chosen.nodes))
        # Kedro's own rule (--only-missing-outputs): a node runs when a persisted output is missing, or when a node
        # that runs needs its in-memory output.
        to_run = sorted(n.name for n in SequentialRunner()._filter_pipeline_for_missing_outputs(piece, catalog).nodes)
        if not to_run:
            logger.info("Unit %d (%s, stage %d) has finished already: nothing to run", chosen.index, chosen.name,
                        chosen.stage)
            return []
        logger.info("Unit %d (%s, stage %d): running %d of its %d nodes", chosen.index, chosen.name, chosen.stage,
                    len(to_run), len(chosen.nodes))
        session.run(pipeline_name=pipeline_name, node_names=to_run)
    return to_run


def _params(text: str | None) -> dict[str, Any] | None:
    """``a.b=1,c=x`` -> nested dict, values parsed as YAML (as ``kedro run --params`` does)."""
    if not text:
        return None
    import yaml  # noqa: PLC0415

    out: dict[str, Any] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dhat.units", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="print the pipeline's units: index, stage, name, nodes")
    running = commands.add_parser("run", help="run one unit (its missing outputs)")
    for command in (listing, running):
        command.add_argument("--pipeline", required=True)
        command.add_argument("--env", default=os.environ.get("KEDRO_ENV"))
    listing.add_argument("--stage", type=int, help="only this stage's units")
    running.add_argument("--unit", type=int)
    running.add_argument("--stage", type=int)
    running.add_argument("--task", type=int, help="the unit's position within --stage (SLURM_ARRAY_TASK_ID)")
    running.add_argument("--params", help="runtime parameters, as kedro run --params")
    args = parser.parse_args(argv)
    if args.command == "list":
        from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

        if args.env:
            os.environ["KEDRO_ENV"] = args.env
        bootstrap_project(Path.cwd())
        from kedro.framework.session import KedroSession  # noqa: PLC0415

        with KedroSession.create(project_path=Path.cwd(), env=args.env) as session:
            units = units_of(args.pipeline, session.load_context().catalog)
        for unit in units:
            if args.stage is None or unit.stage == args.stage:
                sys.stdout.write(f"{unit.index}\tstage {unit.stage}\t{unit.name}\t{len(unit.nodes)} nodes\n")
        stages = sorted({u.stage for u in units})
        sys.stdout.write("# units per stage: " + ", ".join(f"{s}: {sum(u.stage == s for u in units)}" for s in stages)
                         + "\n")
        return 0
    run_unit(Path.cwd(), args.pipeline, args.unit, args.stage, args.task, args.env, _params(args.params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
