"""The system under test: one HTTP/1.1 core and app, several concurrency models (backends/)."""
