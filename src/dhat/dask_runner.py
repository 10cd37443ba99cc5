"""A Kedro runner that runs a pipeline's nodes on a Dask cluster: ``kedro run --runner=dhat.dask_runner.DaskRunner``.

Each node becomes one Dask task, submitted when every node it depends on has finished, so the
nodes of independent namespaces (a study's seeds and methods) run at the same time on different
workers. Nodes exchange data only through the catalog's persisted datasets, on storage every
worker sees; a pipeline that passes a ``MemoryDataset`` between two nodes is refused before
anything runs, with the dataset's name. On a worker the node runs through Kedro's own ``Task``
with the project's hooks (the parameter check runs once, in the driver, before the run;
node hooks such as the training-state clean-up run on the worker; MLflow logs into the
driver's active run).

The cluster comes from the ``dask`` parameters (``conf/base/parameters_dask.yml``): an
existing scheduler's ``address``, or a cluster started for the run, ``cluster: local``
(``n_workers`` CPU worker processes) or ``cluster: cuda`` (``dask_cuda.LocalCUDACluster``: one
worker per visible GPU, each pinned to its own device). Workers are started non-daemonic, so
the stream-mode loader's worker processes and the data-parallel launcher can start inside
them, with ``threads_per_worker`` threads each (one by default: a training node sets torch's
global random state).

A worker that dies mid-node (killed, pre-empted) loses only that node: the scheduler gives it
to another worker, and a training node resumes from its last saved epoch (its resumable
state is a file on the shared storage). After ``allowed_failures`` such deaths of one node,
Dask gives up with ``KilledWorker``; the run then stops with a message naming the node. A node
that raises (a bad parameter, a non-finite loss) is not retried: the run stops with its error.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from typing import Any

from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import AbstractRunner

from dhat.units import memory_datasets_between_nodes

__all__ = ["DaskRunner", "DaskSettings", "memory_datasets_between_nodes"]

logger = logging.getLogger(__name__)

CLUSTERS = ("local", "cuda")


@dataclass(frozen=True)
class DaskSettings:
    """The ``dask`` parameters: where the cluster comes from and how its workers run."""

    address: str | None = None
    cluster: str = "local"
    n_workers: int | None = 2
    threads_per_worker: int = 1
    allowed_failures: int = 3
    dashboard_address: str | None = ":8787"

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DaskSettings:
        from dhat.config import dataclass_from_dict  # noqa: PLC0415

        settings = dataclass_from_dict(cls, dict(values or {}), "dask")
        if settings.cluster not in CLUSTERS:
            raise ValueError(f"dask.cluster must be one of {', '.join(CLUSTERS)}, got {settings.cluster!r}")
        for name in ("threads_per_worker", "allowed_failures"):
            value = getattr(settings, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "threads_per_worker" else 0):
                raise ValueError(f"dask.{name} has an invalid value {value!r}")
        workers = settings.n_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"dask.n_workers must be a positive integer or null (one per core), got {workers!r}")
        return settings


def _mlflow_run() -> tuple[str, str] | None:
    """``(tracking URI, run id)`` of the driver's active MLflow run, for the workers to log into."""
    import sys  # noqa: PLC0415

    mlflow = sys.modules.get("mlflow")
    run = None if mlflow is None else mlflow.active_run()
    return None if run is None else (mlflow.get_tracking_uri(), run.info.run_id)


def _is_daemon() -> bool:
    import multiprocessing  # noqa: PLC0415

    return bool(multiprocessing.current_process().daemon)


_WORKER_LOGGING: list[bool] = []  # set once per worker process


def run_node_on_worker(node: Node, catalog: Any, run_id: str | None, package: str,
                       mlflow_run: tuple[str, str] | None, logging_config: dict[str, Any] | None = None) -> str:
    """Run one node in a Dask worker with the project's hooks and the driver's logging; returns its name."""
    from kedro.framework.hooks.manager import _create_hook_manager, _register_hooks  # noqa: PLC0415
    from kedro.framework.project import PACKAGE_NAME, configure_logging, configure_project, settings  # noqa: PLC0415
    from kedro.runner.task import Task  # noqa: PLC0415

    if PACKAGE_NAME != package:
        configure_project(package)
    if logging_config and not _WORKER_LOGGING:
        configure_logging(logging_config)  # the node's log lines on the worker, as the driver writes them
        _WORKER_LOGGING.append(True)
    logger.info("Running node %s on Dask worker process %d", node.name, os.getpid())
    hook_manager = _create_hook_manager()
    _register_hooks(hook_manager, settings.HOOKS)
    hook_manager.hook.after_catalog_created(catalog=catalog, conf_catalog={}, conf_creds={}, parameters={},
                                            save_version=None, load_versions={})
    os.environ.setdefault("MPLBACKEND", "Agg")
    if mlflow_run is None:
        Task(node=node, catalog=catalog, is_async=False, hook_manager=hook_manager, run_id=run_id).execute()
        return node.name
    import mlflow  # noqa: PLC0415 - the optional extra, only when the driver has an active run

    # Attach this worker to the driver's run and leave it attached: ending it here (a `with` block) would mark the
    # whole run finished while other nodes still log to it. The driver ends it with its final status.
    mlflow.set_tracking_uri(mlflow_run[0])
    active = mlflow.active_run()
    if active is None or active.info.run_id != mlflow_run[1]:
        if active is not None:
            mlflow.end_run()
        mlflow.start_run(run_id=mlflow_run[1])
    Task(node=node, catalog=catalog, is_async=False, hook_manager=hook_manager, run_id=run_id).execute()
    return node.name


class DaskRunner(AbstractRunner):
    """Runs each node of a pipeline as a Dask task, as soon as the nodes it depends on are done (module docstring)."""

    def __init__(self, is_async: bool = False, settings: DaskSettings | dict[str, Any] | None = None) -> None:
        super().__init__(is_async=False)
        if is_async:
            logger.info("DaskRunner loads and saves on the workers; --async is ignored")
        self._settings = settings

    def _get_executor(self, max_workers: int) -> None:
        return None

    def _settings_from(self, catalog: Any) -> DaskSettings:
        if isinstance(self._settings, DaskSettings):
            return self._settings
        if self._settings is not None:
            return DaskSettings.from_dict(self._settings)
        try:
            parameters = catalog.load("parameters")
        except Exception:  # noqa: BLE001 - a catalog without parameters: the defaults
            parameters = {}
        return DaskSettings.from_dict((parameters or {}).get("dask"))

    def _client(self, settings: DaskSettings) -> tuple[Any, Any]:
        """``(client, cluster or None)``: connected to ``address``, or to a cluster started here."""
        import dask  # noqa: PLC0415 - the dask extra
        from distributed import Client, LocalCluster  # noqa: PLC0415

        dask.config.set({"distributed.scheduler.allowed-failures": settings.allowed_failures,
                         "distributed.worker.daemon": False})
        if settings.address:
            client = Client(settings.address)
            daemonic = sorted(w for w, flag in client.run(_is_daemon).items() if flag)
            if daemonic:
                logger.warning(
                    "Dask workers %s are daemonic: stream-mode loader workers (training.loader_workers > 0) and "
                    "data-parallel training (training.devices > 1) cannot start processes there; start the workers "
                    "with --no-daemon", ", ".join(daemonic))
            return client, None
        common = {"threads_per_worker": settings.threads_per_worker, "dashboard_address": settings.dashboard_address}
        if settings.cluster == "cuda":
            try:
                from dask_cuda import LocalCUDACluster  # noqa: PLC0415
            except ImportError as error:
                raise ImportError("dask.cluster: cuda needs dask-cuda (pip install -e '.[dask-cuda]')") from error
            cluster = LocalCUDACluster(**common)
        else:
            cluster = LocalCluster(n_workers=settings.n_workers, processes=True, **common)
        return Client(cluster), cluster

    def _run(self, pipeline: Pipeline, catalog: Any, hook_manager: Any = None, run_id: str | None = None) -> None:
        from distributed import KilledWorker, as_completed  # noqa: PLC0415
        from kedro.framework.project import PACKAGE_NAME  # noqa: PLC0415

        in_memory = memory_datasets_between_nodes(pipeline, catalog)
        if in_memory:
            raise ValueError(
                f"DaskRunner: {', '.join(in_memory)} pass{'es' if len(in_memory) == 1 else ''} between nodes in memory, "
                "which cannot cross worker processes; give each a persisted entry in conf/base/catalog.yml, or run "
                "this pipeline with the SequentialRunner"
            )
        settings = self._settings_from(catalog)
        client, cluster = self._client(settings)
        try:
            where = settings.address or f"{settings.cluster} cluster of {len(client.scheduler_info()['workers'])} workers"
            self._logger.info("Dask: %s; dashboard %s", where, client.dashboard_link)
            self._submit_all(pipeline, catalog, client, run_id, PACKAGE_NAME or "dhat", as_completed, KilledWorker)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def _submit_all(self, pipeline: Pipeline, catalog: Any, client: Any, run_id: str | None, package: str,
                    as_completed: Any, killed_worker: type[Exception]) -> None:
        dependencies = pipeline.node_dependencies
        todo, done = set(dependencies), set()
        load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
        by_key: dict[str, Node] = {}
        mlflow_run = _mlflow_run()
        from kedro.framework.project import LOGGING  # noqa: PLC0415

        logging_config = dict(getattr(LOGGING, "data", {}) or {})
        pending = as_completed()

        def submit_ready() -> None:
            ready = sorted((n for n in todo if dependencies[n] <= done), key=lambda n: n.name)
            for node in ready:
                todo.discard(node)
                future = client.submit(run_node_on_worker, node, catalog, run_id, package, mlflow_run, logging_config,
                                       key=f"{node.name}-{run_id or 'run'}", pure=False, retries=0)
                by_key[future.key] = node
                pending.add(future)

        submit_ready()
        total = len(dependencies)
        for future in pending:
            node = by_key[future.key]
            try:
                future.result()
            except killed_worker as error:
                raise RuntimeError(
                    f"{node.name}: the worker running it died more than dask.allowed_failures times (each time the node was given to another worker, and a training node "
                    "resumed from its last saved epoch); look at the workers' logs (out of memory? pre-empted?) and "
                    "rerun: finished nodes are kept on disk"
                ) from error
            done.add(node)
            self._logger.info("Completed node: %s", node.name)
            self._logger.info("Completed %d out of %d tasks", len(done), total)
            self._release_datasets(node, catalog, load_counts, pipeline)
            submit_ready()
        if todo:
            raise RuntimeError(f"DaskRunner: {len(todo)} nodes could not be scheduled: "
                               f"{', '.join(sorted(n.name for n in todo))}")
