"""`guard --ray`: a guard's replicas on a Ray cluster, the guard stage still the one writer.

Generative guards run as `run --ray` runs a model (`RayPool`, a streaming provider the
stage's dispatch drives); classifier guards (safety heads, ShieldGemma 2) as a
`RayClassifier`, whose replicas each load the classifier and answer `classify_batch`.
Either way results come back to this process, which appends them to
results/<guard>/guard/<protocol>.jsonl with the stage's store, lock, resume and manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from holisafe_bench.distributed.ray_cluster import alive_nodes, connect
from holisafe_bench.distributed.ray_run import RaySettings
from holisafe_bench.distributed.sizing import check_runs_on_ray, plan_replicas
from holisafe_bench.guarding.records import GuardRecord
from holisafe_bench.stages.guard import GuardPlan, GuardSummary, execute_guard

if TYPE_CHECKING:
    from holisafe_bench.dataset import Benchmark
    from holisafe_bench.providers.base import Provider


def guard_on_ray(
    plan: GuardPlan,
    bench: Benchmark,
    settings: RaySettings,
    on_record: Callable[[GuardRecord], None] | None = None,
) -> GuardSummary:
    check_runs_on_ray(plan.model)  # API guards: one machine saturates the vendor
    if not plan.todo:  # nothing to classify: no cluster needed
        return execute_guard(plan, bench, on_record=on_record)
    connection = connect(settings.address)
    try:
        provider = _replicas(plan, settings, connection.address, not connection.started)
        return execute_guard(plan, bench, provider=provider, on_record=on_record)
    finally:
        if connection.started:
            connection.close()


def _replicas(
    plan: GuardPlan, settings: RaySettings, address: str | None, forward_env: bool
) -> Provider:
    from holisafe_bench.distributed.ray_pool import RayClassifier, RayPool

    shape = plan_replicas(plan.model, alive_nodes(), max_replicas=settings.max_replicas)
    if plan.spec.is_classifier:
        batch = plan.options.batch_size or plan.model.engine.batch_size
        classifier = RayClassifier.for_guard(
            plan.spec.kind, plan.model, plan.spec.classifier_options, shape,
            address=address, forward_env=forward_env, batch_size=batch,
        )  # fmt: skip
        # The stage hands the pool enough per call to keep every replica busy.
        plan.options.batch_size = classifier.batch_size
        return classifier
    return RayPool.for_spec(plan.model, shape, address=address, forward_env=forward_env)
