"""The orchestrator's side of a run: the plan, the backend and driver processes, the runner
that turns their windows into results, and `concurbench run` as a command."""
