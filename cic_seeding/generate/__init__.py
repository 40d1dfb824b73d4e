"""The user generator (deterministic, parallel) and the data directory validator."""
