"""Fake vendor API servers on 127.0.0.1 for tests and benchmarks: real HTTP, so the official
SDKs run their real code paths."""
