"""The driver side of a set of replicas (replica.py): items in, one result per item out.

`ReplicaPool.run(items, give_up)` pulls items from the iterator only when a replica has
room (`in_flight` batches each: one computing, the next already queued), sends them in
batches to the replica's batch method, and yields each result on the calling thread as its
batch returns. Nothing is written here: the caller (the run stage) stays the one writer.

Faults. A replica whose process or node dies loses only its batches in flight: their items
go back in a queue and are sent again to a surviving or a replacement replica, in smaller
batches each time (halved per attempt, so a request that kills its replica soon fails
alone); after `max_attempts` an item ends as `give_up(item, reason)`. A replica that cannot
build its provider reports why; if none can, the run stops before any item with that
reason. A dead replica is replaced (at most `restarts` times per replica) wherever the
cluster has room.

Generic over the method: items need an `id`; the method takes a list of items and returns
one result per item in order (`generate_batch` for chat requests; a guard stage's
`classify_batch` later).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from holisafe_bench.distributed.ray_cluster import alive_nodes, import_ray
from holisafe_bench.distributed.replica import Replica
from holisafe_bench.errors import HolisafeError

T = TypeVar("T")
R = TypeVar("R")

# How often an idle driver looks again at the stop flag and at the cluster's nodes.
_POLL_SECONDS = 1.0
_FEASIBILITY_SECONDS = 5.0
_CLOSE_SECONDS = 10.0


class PoolInterrupted(HolisafeError):
    """`stop()` was called (the user pressed Ctrl-C): results so far are kept."""


@dataclass
class PoolSettings:
    replicas: int
    #: Ray actor options of one replica: num_cpus, num_gpus, runtime_env, ...
    actor_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # None: the replica's provider's own batch size
    in_flight: int = 2  # batches per replica: one computing, one queued behind it
    max_attempts: int = 3  # sends of one item before it is given up
    restarts: int = 2  # replacements per replica for replicas that died


@dataclass(eq=False)
class _Member:
    handle: Any
    ready_ref: Any
    ready: bool = False
    dead: bool = False
    sent: list[Any] = field(default_factory=list)  # calls in flight, oldest first
    alone: bool = False  # its call in flight is a batch sent again: queue none behind it


class ReplicaPool:
    def __init__(
        self, name: str, factory: Callable[[], Any], method: str, settings: PoolSettings
    ) -> None:
        self.name = name
        self.factory = factory
        self.method = method
        self.settings = settings
        self.info: dict[str, Any] | None = None  # the first ready replica's ready() answer
        self.members: list[_Member] = []
        self.replacements_left = settings.restarts * settings.replicas
        self.build_errors: list[str] = []
        self.lost = 0  # replicas that died
        self.retried = 0  # items sent again after a failure
        self._stop = threading.Event()
        self._checked_at = 0.0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ReplicaPool:
        for _ in range(self.settings.replicas):
            self._add_member()
        return self

    def _add_member(self) -> None:
        ray = import_ray()
        actor = ray.remote(Replica).options(
            max_restarts=0, max_task_retries=0, **self.settings.actor_options
        )
        handle = actor.remote(self.factory)
        self.members.append(_Member(handle, handle.ready.remote()))

    def stop(self) -> None:
        """Ask `run` (in another thread) to end at its next step."""
        self._stop.set()

    def close(self) -> None:
        """Let each live replica release its engine, then end the actors."""
        ray = import_ray()
        live = [m for m in self.members if not m.dead]
        closing = [m.handle.close.remote() for m in live if m.ready]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_SECONDS)
        for member in live:
            self._end(member)

    def _end(self, member: _Member) -> None:
        member.dead = True
        with contextlib.suppress(Exception):  # already gone with its node
            import_ray().kill(member.handle, no_restart=True)

    # -- readiness ----------------------------------------------------------------------

    def wait_ready(self) -> dict[str, Any]:
        """Block until one replica has built its provider; its ready() answer."""
        while self.info is None:
            self._check_stop()
            starting = self._starting()
            if not starting:
                self._raise_no_replica()
            for _ in self._wait_events([m.ready_ref for m in starting], None):
                pass  # readiness only: no batch is in flight yet
        return self.info

    def _starting(self) -> list[_Member]:
        return [m for m in self.members if not m.ready and not m.dead]

    def _raise_no_replica(self) -> None:
        if self.build_errors:
            raise HolisafeError(
                f"{self.name}: cannot build the model on Ray: {self.build_errors[0]}"
            )
        raise HolisafeError(f"{self.name}: every Ray replica died before it was ready")

    def _on_ready(self, member: _Member, ref: Any) -> None:
        ray = import_ray()
        try:
            info = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._lose(member, exc)
            return
        if info["error"] is not None:
            self.build_errors.append(info["error"])
            self._end(member)  # a build failure repeats: no replacement
            return
        member.ready = True
        if self.info is None:
            self.info = info

    def _lose(self, member: _Member, exc: BaseException) -> None:
        """A replica's process or node died: end it and start a replacement."""
        if member.dead:
            return
        self.lost += 1
        self._end(member)
        if self.replacements_left > 0 and not self._stop.is_set():
            self.replacements_left -= 1
            self._add_member()

    # -- the run ------------------------------------------------------------------------

    def run(self, items: Iterable[T], give_up: Callable[[T, str], R]) -> Iterator[R]:
        """One result per item (from the replicas, or `give_up` with the reason), yielded
        in the order they finish."""
        state = _RunState(iter(items))
        self.wait_ready()
        while True:
            self._check_stop()
            self._submit(state)
            if not state.pending and state.finished():
                return
            if not state.pending and not self._starting() and not self._ready():
                yield from self._fail_rest(state, give_up)
                return
            self._check_feasible(state)
            waits = list(state.pending) + [m.ready_ref for m in self._starting()]
            yield from self._wait_events(waits, state, give_up)

    def ready_count(self) -> int:
        return len(self._ready())

    def _ready(self) -> list[_Member]:
        return [m for m in self.members if m.ready and not m.dead]

    def _submit(self, state: _RunState) -> None:
        """Fill each replica up to `in_flight` batches. A batch sent again after a failure
        goes to an idle replica and nothing is queued behind it, so if it kills that
        replica, the death is its own (not a batch-mate's whose reply it cut short)."""
        size = self.settings.batch_size or (self.info or {}).get("batch_size") or 8
        for member in sorted(self._ready(), key=lambda m: len(m.sent)):
            while not member.alone and len(member.sent) < self.settings.in_flight:
                again = bool(state.retries)
                if again and member.sent:
                    break
                batch = state.next_batch(size)
                if not batch:
                    return
                ref = member.handle.call.remote(self.method, batch)
                state.pending[ref] = (member, batch)
                member.sent.append(ref)
                member.alone = again

    def _wait_events(
        self, refs: list[Any], state: Any, give_up: Callable[[Any, str], Any] | None = None
    ) -> Iterator[Any]:
        ray = import_ray()
        if not refs:
            return
        done, _ = ray.wait(refs, num_returns=1, timeout=_POLL_SECONDS)
        starting = {m.ready_ref: m for m in self._starting()}
        for ref in done:
            if ref in starting:
                self._on_ready(starting[ref], ref)
            else:
                yield from self._on_batch(ref, state, give_up)

    def _on_batch(self, ref: Any, state: _RunState, give_up: Callable) -> Iterator[Any]:
        ray = import_ray()
        member, batch = state.pending.pop(ref)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the method raised; the replica lives on
            member.sent.remove(ref)
            member.alone = False
            self.retried += len(batch)
            yield from state.retry(batch, _reason(exc), self.settings.max_attempts, give_up)
        except ray.exceptions.RayError as exc:  # the replica's process or node died
            self._lose(member, exc)
            yield from self._resend_lost(member, ref, batch, state, _reason(exc), give_up)
        else:
            member.sent.remove(ref)
            member.alone = False
            yield from results

    def _resend_lost(
        self, member: _Member, ref: Any, batch: list, state: _RunState, reason: str, give_up
    ) -> Iterator[Any]:
        """Every batch the dead replica held, in the order sent. A replica runs its calls in
        order, but their outcomes may reach us in any order: a batch that finished before
        the death is kept; the first one lost was running and counts as an attempt; those
        queued behind it never ran and are sent again uncounted."""
        ray = import_ray()
        counted = False
        for sent in member.sent:
            lost = batch
            if sent != ref:
                lost = state.pending.pop(sent)[1]
                try:
                    results = ray.get(sent)  # at once: done, or failed with its replica
                except ray.exceptions.RayError:
                    pass
                else:
                    yield from results
                    continue
            self.retried += len(lost)
            if not counted:
                counted = True
                yield from state.retry(lost, reason, self.settings.max_attempts, give_up)
            else:
                state.resend(lost)
        member.sent.clear()

    def _fail_rest(self, state: _RunState, give_up: Callable) -> Iterator[Any]:
        reason = "no Ray replica left"
        if self.build_errors:
            reason += f" (cannot build the model: {self.build_errors[0]})"
        elif self.lost:
            reason += f" ({self.lost} died)"
        yield from (give_up(item, reason) for item in state.drain())

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise PoolInterrupted(f"{self.name}: interrupted")

    def _check_feasible(self, state: _RunState) -> None:
        """Replicas that wait for room that no live node has any more are given up, so a
        run that lost its GPU nodes ends instead of waiting for ever."""
        if (
            state.pending
            or self._ready()
            or time.monotonic() - self._checked_at < _FEASIBILITY_SECONDS
        ):
            return
        self._checked_at = time.monotonic()
        if not any(_fits(node, self.settings.actor_options) for node in alive_nodes()):
            self.build_errors.append("no live Ray node has the resources of one replica")
            for member in self._starting():
                self._end(member)


class _RunState:
    """Items not sent yet (the source, then retries first), batches in flight, attempts."""

    def __init__(self, source: Iterator[Any]) -> None:
        self.source = source
        self.exhausted = False
        self.retries: deque[Any] = deque()
        self.attempts: dict[str, int] = {}
        self.pending: dict[Any, tuple[_Member, list[Any]]] = {}

    def finished(self) -> bool:
        return self.exhausted and not self.retries

    def next_batch(self, size: int) -> list[Any]:
        if self.retries:  # halved for each failure of its most-failed item
            batch: list[Any] = []
            worst = 0
            while self.retries:
                worst = max(worst, self.attempts.get(self.retries[0].id, 0))
                if len(batch) >= max(1, size >> worst):
                    break
                batch.append(self.retries.popleft())
            return batch
        if self.exhausted:
            return []
        batch = list(itertools.islice(self.source, size))
        self.exhausted = len(batch) < size
        return batch

    def retry(
        self, batch: list[Any], reason: str, max_attempts: int, give_up: Callable
    ) -> Iterator[Any]:
        for item in batch:
            self.attempts[item.id] = self.attempts.get(item.id, 0) + 1
            if self.attempts[item.id] >= max_attempts:
                yield give_up(item, f"failed {max_attempts} times on Ray replicas: {reason}")
            else:
                self.retries.append(item)

    def resend(self, batch: list[Any]) -> None:
        self.retries.extendleft(reversed(batch))

    def drain(self) -> Iterator[Any]:
        while self.retries:
            yield self.retries.popleft()
        self.exhausted = True
        yield from self.source


def _fits(node: dict[str, float], options: dict[str, Any]) -> bool:
    return node.get("CPU", 0) >= options.get("num_cpus", 1) and node.get("GPU", 0) >= options.get(
        "num_gpus", 0
    )


def _reason(exc: BaseException) -> str:
    """Ray's multi-line error as one line: why the replica died, else the first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    why = [line for line in lines if line.startswith("The actor died")]
    text = why[-1] if why else (lines[0] if lines else type(exc).__name__)
    return f"{type(exc).__name__}: {text}"[:300]
