"""How the guard stage feeds a classifier its batches (stages/guard.classify_pipelined): on
the CPU each batch is prepared just before its forward pass, on the caller's thread; a
classifier on an accelerator gets the next batch prepared in a thread while this one's
forward pass runs. Either way the results come back in order, batch by batch."""

from __future__ import annotations

import threading

import pytest

from holisafe_bench.errors import HolisafeError
from holisafe_bench.providers.base import ClassifierProvider, ClassifyResult
from holisafe_bench.providers.types import ChatRequest
from holisafe_bench.stages.guard import classify_pipelined


class RecordingClassifier(ClassifierProvider):
    """Logs every prepare and forward pass with the thread it ran on."""

    provider_name = "fake"

    def __init__(self, ahead: bool, drop_one: bool = False) -> None:
        self.ahead, self.drop_one = ahead, drop_one
        self.events: list[tuple[str, str, str]] = []  # (step, first id, thread name)

    @property
    def prepares_ahead(self) -> bool:
        return self.ahead

    def _log(self, step: str, requests) -> None:
        self.events.append((step, requests[0].id, threading.current_thread().name))

    def prepare(self, requests):
        self._log("prepare", requests)
        return list(requests)

    def classify_prepared(self, prepared):
        self._log("forward", prepared)
        results = [ClassifyResult(id=r.id, probs={"safe": 1.0}) for r in prepared]
        return results[:-1] if self.drop_one else results

    def classify_batch(self, requests):
        return self.classify_prepared(self.prepare(requests))

    def close(self) -> None:
        pass


def _batches(n_batches: int, size: int = 3) -> list[list[tuple[int, ChatRequest]]]:
    return [
        [(b * size + i, ChatRequest(id=f"{b}-{i}", text="q")) for i in range(size)]
        for b in range(n_batches)
    ]


def _check_results(batches, out) -> None:
    assert [batch for batch, _ in out] == batches
    for batch, results in out:
        assert [r.id for r in results] == [request.id for _, request in batch]


def test_on_the_cpu_each_batch_is_prepared_just_before_its_forward_pass_on_one_thread():
    classifier, batches = RecordingClassifier(ahead=False), _batches(4)
    out = list(classify_pipelined(classifier, batches))
    _check_results(batches, out)
    steps = [(step, first) for step, first, _ in classifier.events]
    assert steps == [(s, f"{b}-0") for b in range(4) for s in ("prepare", "forward")]
    assert {thread for *_, thread in classifier.events} == {threading.current_thread().name}


def test_on_an_accelerator_the_next_batch_is_prepared_in_a_thread_before_this_forward_pass():
    classifier, batches = RecordingClassifier(ahead=True), _batches(4)
    out = list(classify_pipelined(classifier, batches))
    _check_results(batches, out)
    order = [(step, first) for step, first, _ in classifier.events]
    for b in range(3):  # batch b+1 was handed to the thread before batch b's forward pass
        assert order.index(("prepare", f"{b + 1}-0")) < order.index(("forward", f"{b + 1}-0"))
        assert order.index(("forward", f"{b}-0")) < order.index(("forward", f"{b + 1}-0"))
    prepare_threads = {thread for step, _, thread in classifier.events if step == "prepare"}
    forward_threads = {thread for step, _, thread in classifier.events if step == "forward"}
    assert all(name.startswith("guard-prepare") for name in prepare_threads)
    assert forward_threads == {threading.current_thread().name}


@pytest.mark.parametrize("ahead", [False, True])
def test_a_classifier_returning_too_few_results_is_an_error_naming_the_counts(ahead):
    classifier = RecordingClassifier(ahead=ahead, drop_one=True)
    with pytest.raises(HolisafeError, match="returned 2 results for a batch of 3"):
        list(classify_pipelined(classifier, _batches(2)))


def test_the_base_classifier_does_not_prepare_ahead():
    assert ClassifierProvider.prepares_ahead.fget(RecordingClassifier(ahead=True)) is False
