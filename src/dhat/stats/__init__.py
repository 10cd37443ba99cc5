"""Statistics and reports over evaluated runs: paired comparisons, the multi-seed study's aggregation, the
report's tables and figures, and the parameter sweeps' tables (intervals themselves: :mod:`dhat.intervals`)."""
