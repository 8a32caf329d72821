"""Test helpers, shipped with the package so that tests, benchmarks and the offline demo
share them: tiny random-weight models built from a config (no hub), and fake vendor API
servers on 127.0.0.1 (real HTTP, so the official SDKs run their real code paths).

Nothing here is used to evaluate a real model; the demo uses the tiny LLaVA only to show
that every stage runs.
"""
