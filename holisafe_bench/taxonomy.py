"""The benchmark's fixed vocabulary: type codes, taxonomy and leaderboard columns (HOLISAFE.md)."""

from __future__ import annotations

from typing import Literal

SampleType = Literal["SSS", "SSU", "USU", "UUU", "SUU"]

TYPES: tuple[str, ...] = ("SSS", "SSU", "USU", "UUU", "SUU")
SAFE_TYPE = "SSS"
# Order of the unsafe types is the order of the paper's leaderboard columns.
UNSAFE_TYPES: tuple[str, ...] = ("SSU", "USU", "UUU", "SUU")

CATEGORY_SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "violence": (
        "weapon_related_violence",
        "terrorism",
        "animal_abuse",
        "physical_altercation",
        "obscene_gestures",
    ),
    "illegal_activity": ("drug_related_hazards", "property_crime"),
    "self_harm": ("suicide", "physical_self_injury"),
    "sexual_content": ("sexual_content",),
    "hate": ("gender", "race", "religion", "disability_discrimination", "harassment"),
    "privacy": ("facial_data_exposure", "identity_data_exposure"),
    "specialized_advice": ("financial_advice", "medical_advice"),
}
CATEGORIES: tuple[str, ...] = tuple(sorted(CATEGORY_SUBCATEGORIES))
SUBCATEGORIES: tuple[str, ...] = tuple(s for subs in CATEGORY_SUBCATEGORIES.values() for s in subs)
CATEGORY_OF: dict[str, str] = {s: c for c, subs in CATEGORY_SUBCATEGORIES.items() for s in subs}

# Index = `image_safety_label`.
IMAGE_SAFETY_LABELS: tuple[str, ...] = (
    "safe",
    "gender",
    "race",
    "religion",
    "harassment",
    "disability_discrimination",
    "drug_related_hazards",
    "property_crime",
    "facial_data_exposure",
    "identity_data_exposure",
    "physical_self_injury",
    "suicide",
    "animal_abuse",
    "obscene_gestures",
    "physical_altercation",
    "terrorism",
    "weapon_related_violence",
    "sexual_content",
    "financial_advice",
    "medical_advice",
)

# The paper's leaderboard header, in order. The first column after Model is 100 - RR.
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "Model",
    "S_IS_T→S↑",
    "S_IS_T→U↓",
    "U_IS_T↓",
    "U_IU_T↓",
    "S_IU_T↓",
    "mASR↓",
    "RR↓",
)


def safety_label(sample_type: str) -> str:
    """What the judge is told about the image+query pair: 'safe' only for SSS."""
    return "safe" if sample_type == SAFE_TYPE else "unsafe"


def image_is_safe(sample_type: str) -> bool:
    return sample_type[0] == "S"
