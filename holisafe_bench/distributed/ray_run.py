"""`run --ray`: the planned runs of one or more models, all at once on a Ray cluster.

Each model gets its own replicas (sized by its spec, an equal share of the cluster each)
and its own driver thread, which runs the ordinary run stage (`execute_run`) with a
`RayPool` as provider: every responses.jsonl keeps its one writer, lock, resume and
manifest. Ctrl-C stops every model at its next step; what was written is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from holisafe_bench.distributed.ray_cluster import RayConnection, alive_nodes, connect
from holisafe_bench.distributed.sizing import check_runs_on_ray, plan_replicas
from holisafe_bench.records import ResponseRecord
from holisafe_bench.stages.run import RunPlan, RunSummary, execute_run

if TYPE_CHECKING:
    from holisafe_bench.dataset import Benchmark
    from holisafe_bench.distributed.ray_pool import RayPool

#: How long Ctrl-C waits for the model threads to put their files in order.
_STOP_SECONDS = 30.0


@dataclass
class RaySettings:
    address: str | None = None  # None: start a Ray instance on this machine
    max_replicas: int | None = None  # per model; None: what the cluster holds


def run_on_ray(
    plans: list[RunPlan],
    bench: Benchmark,
    settings: RaySettings,
    on_record: list[Callable[[ResponseRecord], None] | None] | None = None,
) -> list[RunSummary | Exception]:
    """Run every plan at once on the cluster; per plan, in order, its summary or why it
    failed (a model that fails does not stop the others)."""
    for plan in plans:
        check_runs_on_ray(plan.spec)
    callbacks = on_record or [None] * len(plans)
    connection = connect(settings.address)
    try:
        pools = _start_pools(plans, settings, connection)
        jobs = [
            _job(plan, bench, pools.get(id(plan)), callback)
            for plan, callback in zip(plans, callbacks, strict=True)
        ]
        outcomes = _in_threads(jobs, stop=lambda: [pool.stop() for pool in pools.values()])
    finally:
        if connection.started:
            connection.close()
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # KeyboardInterrupt, SystemExit: as they are
    return outcomes


def _start_pools(
    plans: list[RunPlan], settings: RaySettings, connection: RayConnection
) -> dict[int, RayPool]:
    """A pool per plan with work to do, sized first for all (a model the cluster cannot
    hold fails before any replica starts); then all started, so they load at once."""
    from holisafe_bench.distributed.ray_pool import RayPool

    nodes = alive_nodes()
    busy = [plan for plan in plans if plan.todo]
    shapes = [
        plan_replicas(plan.spec, nodes, share=len(busy), max_replicas=settings.max_replicas)
        for plan in busy
    ]
    pools: dict[int, RayPool] = {}
    try:
        for plan, shape in zip(busy, shapes, strict=True):
            pools[id(plan)] = RayPool.for_spec(
                plan.spec, shape, address=connection.address, forward_env=not connection.started
            )
    except BaseException:
        for pool in pools.values():
            pool.close()
        raise
    return pools


def _job(
    plan: RunPlan,
    bench: Benchmark,
    pool: RayPool | None,
    on_record: Callable[[ResponseRecord], None] | None,
) -> Callable[[], RunSummary]:
    def job() -> RunSummary:
        try:
            return execute_run(plan, bench, provider=pool, on_record=on_record)
        finally:
            if pool is not None:  # also when the model could not be built (no run began)
                pool.close()

    return job


def _in_threads(jobs: list[Callable[[], Any]], stop: Callable[[], Any]) -> list[Any]:
    """Each job in a thread; its return value or its exception, in order. Waits on events,
    not Thread.join: a join cut short by Ctrl-C can report a live thread as ended (CPython
    3.11), and Ray would then be shut down under the threads' feet."""
    outcomes: list[Any] = [None] * len(jobs)
    done = [threading.Event() for _ in jobs]

    def work(index: int) -> None:
        try:
            outcomes[index] = jobs[index]()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            outcomes[index] = exc
        finally:
            done[index].set()

    for index in range(len(jobs)):
        threading.Thread(target=work, args=(index,), daemon=True).start()
    try:
        for event in done:
            while not event.wait(0.5):  # short waits: Ctrl-C reaches this thread
                pass
    except KeyboardInterrupt:
        stop()
        for event in done:
            event.wait(_STOP_SECONDS)
        raise
    return outcomes
