"""The on-disk record of vendor batch jobs: written (and synced) the moment a job is
accepted, so a crash or Ctrl-C leads the next run to poll that job rather than submit
and pay for the same requests again."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from holisafe_bench.records import utc_now
from holisafe_bench.store import RecordStore


class LedgerEntry(BaseModel):
    event: Literal["submitted", "collected"]
    job_id: str
    vendor: str
    judge_model: str = ""
    # Custom ids (cache keys) in submission order; only on "submitted".
    keys: list[str] = Field(default_factory=list)
    at: str = Field(default_factory=utc_now)
    note: str | None = None


class BatchLedger:
    def __init__(self, path: Path) -> None:
        self.store = RecordStore(path, LedgerEntry, key="job_id")

    def open_jobs(self, vendor: str, judge_model: str) -> list[LedgerEntry]:
        """Jobs submitted for this vendor and judge model whose results were not collected."""
        submitted: dict[str, LedgerEntry] = {}
        collected: set[str] = set()
        if not self.store.path.exists():
            return []
        for entry in self._entries():
            if entry.event == "submitted":
                submitted[entry.job_id] = entry
            else:
                collected.add(entry.job_id)
        return [
            e
            for job_id, e in submitted.items()
            if job_id not in collected and e.vendor == vendor and e.judge_model == judge_model
        ]

    def _entries(self) -> list[LedgerEntry]:
        out = []
        for _, raw in self.store.iter_lines():
            try:
                out.append(LedgerEntry.model_validate_json(raw))
            except ValueError:
                continue  # a torn line: that write never completed
        return out

    def record(self, entry: LedgerEntry) -> None:
        # One line, synced before returning: the job id must survive a crash right after.
        with self.store.writer(fsync_every=1) as writer:
            writer.write(entry)
