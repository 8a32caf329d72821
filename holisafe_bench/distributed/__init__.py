"""Running stages on a Ray cluster (`run --ray`).

- ray_cluster: connecting to a cluster (or starting a local one) and reading its nodes;
- replica: the Ray actor that owns one model replica;
- pool: the fault-tolerant driver side, generic over the replica's batch method;
- sizing: how many replicas of a model, and what each reserves;
- ray_pool: `RayPool`, the pool as a chat `StreamingProvider`, so `run` stays the writer;
- ray_run: several models at once, one driver thread each;
- progress_lines: one progress line per model in one display.

Ray is an optional extra (`holisafe-bench[ray]`): nothing here imports it at module level.
"""
