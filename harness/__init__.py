"""The load side of concurbench: scenarios, launcher, drivers, metrics, results, reports."""
