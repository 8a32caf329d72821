"""Sample filters shared by every stage: limit, types, categories, ids, a seeded subset."""

from __future__ import annotations

import random
from collections.abc import Iterable

from holisafe_bench.errors import HolisafeError
from holisafe_bench.records import Sample
from holisafe_bench.taxonomy import CATEGORIES, TYPES


def select(
    samples: Iterable[Sample],
    *,
    limit: int | None = None,
    types: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    ids: Iterable[int] | None = None,
    sample_n: int | None = None,
    seed: int = 0,
) -> list[Sample]:
    chosen = sorted(samples, key=lambda s: s.id)
    if ids:
        missing = set(ids) - {s.id for s in chosen}
        if missing:
            shown = ", ".join(map(str, sorted(missing)[:10]))
            shown += ", ..." if len(missing) > 10 else ""
            raise HolisafeError(
                f"--ids: {len(missing)} id(s) not in the dataset's valid rows ({shown}); "
                "`holisafe-bench data verify` lists the rows it could not read"
            )
    if types:
        wanted = {t.upper() for t in types}
        unknown = wanted - set(TYPES)
        if unknown:
            raise HolisafeError(f"--types: unknown {sorted(unknown)}; use {', '.join(TYPES)}")
        chosen = [s for s in chosen if s.type in wanted]
    if categories:
        wanted_cats = set(categories)
        unknown = wanted_cats - set(CATEGORIES)
        if unknown:
            raise HolisafeError(
                f"--categories: unknown {sorted(unknown)}; use {', '.join(CATEGORIES)}"
            )
        chosen = [s for s in chosen if s.category in wanted_cats]
    if ids:
        wanted_ids = set(ids)
        chosen = [s for s in chosen if s.id in wanted_ids]
    if sample_n is not None and sample_n < len(chosen):
        # Sorted by id first, so the subset does not depend on the input order.
        picked = set(random.Random(seed).sample(range(len(chosen)), sample_n))
        chosen = [s for i, s in enumerate(chosen) if i in picked]
    if limit is not None:
        chosen = chosen[:limit]
    return chosen
