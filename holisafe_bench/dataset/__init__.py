"""The benchmark data: loading from every layout, validation, filters, synthetic sets."""

from holisafe_bench.dataset.benchmark import Benchmark, ImageStore
from holisafe_bench.dataset.loaders import (
    HUB_DATASET_ID,
    bundled_sample_dir,
    download_from_hub,
    load_benchmark,
    recorded_dataset,
)
from holisafe_bench.dataset.select import select
from holisafe_bench.dataset.validate import DEFAULT_MAX_PIXELS, RowIssue

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HUB_DATASET_ID",
    "Benchmark",
    "ImageStore",
    "RowIssue",
    "bundled_sample_dir",
    "download_from_hub",
    "load_benchmark",
    "recorded_dataset",
    "select",
]
