"""The wrk driver: the Locust driver's contract, measured by wrk, to cross-check its figures."""
