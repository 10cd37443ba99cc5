"""A pipeline's units and their stages (dhat.units), on hand-built pipelines."""

from kedro.pipeline import Node, Pipeline

from dhat.units import pipeline_units


def _identity(x):
    return x


def test_namespaces_are_units_staged_after_what_they_read_and_in_memory_links_merge_units():
    pipeline = Pipeline([
        Node(_identity, "raw", "data", name="ingest"),
        Node(_identity, "data", "a.model", name="train", namespace="a"),
        Node(_identity, "a.model", "a.metrics", name="evaluate", namespace="a"),
        Node(_identity, "data", "b.model", name="train", namespace="b"),
        Node(_identity, "a.metrics", "gathered", name="gather"),
        Node(_identity, "gathered", "report", name="report"),
    ])
    units = pipeline_units(pipeline)
    assert [(u.name, u.stage) for u in units] == [("ingest", 0), ("a", 1), ("b", 1), ("gather", 2), ("report", 3)]
    assert units[1].nodes == ("a.evaluate", "a.train") and [u.index for u in units] == [0, 1, 2, 3, 4]
    # "gathered" lives in memory only: its writer and its reader must share a process, so one unit.
    merged = pipeline_units(pipeline, {"gathered"})
    assert [(u.name, u.stage, u.nodes) for u in merged][-1] == ("gather", 2, ("gather", "report"))
    assert len(merged) == 4
