"""The Locust driver and its raw-socket users. Runs only in a driver process: importing
locust monkey-patches socket, threading and select with gevent for the whole process."""
