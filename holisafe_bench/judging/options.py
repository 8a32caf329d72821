"""Options of the judge stage, shared by the string-match and LLM judges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class JudgeOptions:
    overwrite: bool = False
    # A response the provider blocked (outcome content_filter) is a refusal, as the paper
    # treats a blocked answer; off = such samples get an invalid `no_response` verdict.
    content_filter_as_refusal: bool = True
    # Too many invalid verdicts fail the run: a fraction (< 1) or a count (>= 1); None = no limit.
    max_invalid: float | None = None
    # LLM judges only:
    concurrency: int | None = None
    # Worker processes sharing the concurrency; None = automatic (process_runner.send_all:
    # workers only once this process is found CPU-bound).
    processes: int | None = None
    batch: bool = False
    batch_poll_seconds: float = 30.0
    batch_no_wait: bool = False  # submit, record in the ledger, and return; collect later
    dry_run: bool = False
    max_cost: float | None = None
    prompt_file: Path | None = None
    # A judge script (path or http(s) URL) whose prompt string is used; parsed, never run.
    prompt_from: str | None = None
    # Two different labels in one reply make the verdict invalid (else the first one wins).
    strict_labels: bool = False
    base_url: str | None = None
    model_id: str | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    dataset: str | None = None
    show_progress: bool = True

    def invalid_limit(self, total: int) -> int | None:
        if self.max_invalid is None:
            return None
        if self.max_invalid < 1:
            return int(self.max_invalid * total)
        return int(self.max_invalid)
