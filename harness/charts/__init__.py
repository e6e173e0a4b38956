"""Charts, report.html and compare, drawn from stored results only (measurement rule 7)."""
