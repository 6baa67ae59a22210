"""The benchmark report: a rich table on the terminal and a JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def format_value(value: float, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if unit == "s":
        return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"
    return f"{value:.4g} {unit}"


def print_table(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, show_lines=False)
    table.add_column("workload", overflow="fold")
    table.add_column("ours", justify="right")
    table.add_column("reference", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("met", justify="center")
    for row in rows:
        table.add_row(
            row["workload"],
            format_value(row["ours"], row["unit"]),
            format_value(row["reference"], row["unit"]),
            f"{row['ratio']:.3g}",
            row["target"],
            "[green]yes[/green]" if row["met"] else "[red]no[/red]",
        )
    console.print(table)


def write_json(path: Path, rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    """Write the rows to ``path`` as a JSON list, with the machine in every row's notes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = [{**row, "notes": {**row.get("notes", {}), "machine": machine}} for row in rows]
    path.write_text(json.dumps(stamped, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    raise TypeError(f"cannot serialize {type(value).__name__} in a benchmark row")
