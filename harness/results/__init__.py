"""Results: results.json (schema, atomic writes, reads), step records and their flags, the
summary, and latency histograms. A leaf: nothing here imports the rest of the harness."""
