"""The paper's leaderboard: rows built from the results (`tables`) and written in one of
the formats of one table (`formats.FORMATS`)."""

from holisafe_bench.leaderboard.formats import (
    FORMATS,
    Format,
    SortableTable,
    latex_escape,
    markdown_row,
    sortable_table,
    to_csv,
    to_html,
    to_json,
    to_latex,
    to_markdown,
    write_comparison,
    write_leaderboard,
)
from holisafe_bench.leaderboard.tables import (
    LeaderboardRow,
    build_leaderboard,
    compare_rows,
    leaderboard_rows,
    model_labels,
    percent,
    skipped_notes,
    table_cells,
)

__all__ = [
    "FORMATS",
    "Format",
    "LeaderboardRow",
    "SortableTable",
    "build_leaderboard",
    "compare_rows",
    "latex_escape",
    "leaderboard_rows",
    "markdown_row",
    "model_labels",
    "percent",
    "skipped_notes",
    "sortable_table",
    "table_cells",
    "to_csv",
    "to_html",
    "to_json",
    "to_latex",
    "to_markdown",
    "write_comparison",
    "write_leaderboard",
]
