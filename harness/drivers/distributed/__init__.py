"""Locust's master/worker mode carrying our users (see protocol.py). Runs only in a driver
process, as harness.drivers.locust does."""
