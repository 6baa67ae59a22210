"""Rich tables of a run's summary, for the terminal."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


def laws_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary.get('kind', '')}: measured laws beside theory", title_justify="left")
    table.add_column("law")
    table.add_column("measured", justify="right")
    table.add_column("95% CI", justify="right")
    table.add_column("theory", justify="right")
    table.add_column("in CI", justify="center")
    table.add_column("status")
    for law in summary.get("laws", []):
        ci = law.get("ci95")
        interval = "-" if not ci or ci[0] is None else f"[{_number(ci[0])}, {_number(ci[1])}]"
        contains = law.get("contains_theory")
        if contains is None:
            mark = "-"
        elif contains:
            mark = "[green]yes[/green]"
        else:
            mark = "[red]no[/red]"
        status = law.get("status", "")
        if status == "conjecture":
            status = "[yellow]conjecture[/yellow]"
        table.add_row(law["name"], _number(law.get("measured")), interval, _number(law.get("theory")), mark, status)
    return table


def law_details(summary: dict[str, Any]) -> list[str]:
    """Return one line per law with its fit window and note, printed under the laws table."""
    lines = []
    for law in summary.get("laws", []):
        detail = "; ".join(part for part in (law.get("window"), law.get("note")) if part)
        if detail:
            lines.append(f"{law['name']}: {detail}")
    return lines


def rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right", overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(column)) for column in columns])
    return table


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_number(v) for v in value) + "]"
    if isinstance(value, (int, float)) or value is None:
        return _number(value)
    return str(value)


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print the laws table, the other tables and the notes of a summary."""
    console.print(laws_table(summary))
    for line in law_details(summary):
        console.print(f"  [dim]{line}[/dim]", highlight=False)
    for title, rows in summary.get("tables", {}).items():
        if rows:
            console.print(rows_table(title.replace("_", " "), rows))
    for note in summary.get("notes", []):
        console.print(f"[dim]note:[/dim] {note}")
