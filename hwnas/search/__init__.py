"""The search: `runner.run_search` prepares, trains (`loop.SearchLoop`) and finishes a run; the run folder, the
selection among band candidates, measured confirmation on the device, and the plots."""
