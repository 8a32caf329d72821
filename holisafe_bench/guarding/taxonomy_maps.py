"""Taxonomy mappings: a guard's own category codes (Llama Guard's S1..S14, LLaVAGuard's
O1..O9, ShieldGemma's policies, a safety head's category names) onto HoliSafe's 20 image
labels, read from guards/taxonomies/<name>.toml.

Each row of a file is `CODE = "holisafe_label"` with a comment saying why. A target is one
of `taxonomy.IMAGE_SAFETY_LABELS` or "other" (a guard category with no HoliSafe
counterpart: it is counted as such, never dropped); anything else is refused with the file
and key named.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from holisafe_bench.guarding.verdict import OTHER
from holisafe_bench.registry import RegistryError, registry_dir
from holisafe_bench.taxonomy import IMAGE_SAFETY_LABELS

TARGETS: frozenset[str] = frozenset((*IMAGE_SAFETY_LABELS, OTHER))


def load_taxonomy(name: str | None) -> dict[str, str]:
    """The mapping named by a guard's `taxonomy` field: a file stem in guards/taxonomies/
    or a path to a TOML file; None (guards that answer in HoliSafe's own labels) -> {}.
    A fresh dict each call, so a caller may not change the cached one."""
    if name is None:
        return {}
    return dict(_load(str(taxonomy_path(name))))


def taxonomy_path(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" or len(path.parts) > 1:
        return path
    return registry_dir("guards") / "taxonomies" / f"{name}.toml"


def known_taxonomies() -> list[str]:
    return sorted(p.stem for p in (registry_dir("guards") / "taxonomies").glob("*.toml"))


@lru_cache(maxsize=32)
def _load(path_str: str) -> dict[str, str]:
    path = Path(path_str)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(known_taxonomies()) or "none"
        raise RegistryError(f"{path}: no such taxonomy file (built-in: {known})") from None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from exc
    mapping: dict[str, str] = {}
    for key, target in data.items():
        if not isinstance(target, str):
            raise RegistryError(
                f"{path}: key {key!r}: expected a HoliSafe label in quotes, got {target!r}"
            )
        if target not in TARGETS:
            raise RegistryError(
                f"{path}: key {key!r}: {target!r} is not a HoliSafe image label or "
                f"{OTHER!r} (labels: {', '.join(IMAGE_SAFETY_LABELS)})"
            )
        mapping[key] = target
    return mapping
