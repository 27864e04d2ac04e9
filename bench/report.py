"""Figures and the table that shows them.

A ``Figure`` is one measured quantity: its samples (one per repetition), the median
that is quoted, and optionally a target (``>=`` or ``<=`` a number) that says whether
it is met.  A figure whose measurement failed carries the error instead of samples and
counts as not met.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<="
    value: float
    text: str = ""  # shown instead of "op value" when set, e.g. ">= 0.7x etcd"

    def met(self, x: float) -> bool:
        return x >= self.value if self.op == ">=" else x <= self.value

    def __str__(self) -> str:
        return self.text or f"{self.op} {fmt(self.value)}"


@dataclass
class Figure:
    group: str
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    target: Target | None = None
    note: str = ""
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def met(self) -> bool | None:
        """True/False against the target; None when there is no target."""
        if self.target is None:
            return None
        m = self.median
        return m is not None and self.error is None and self.target.met(m)

    def as_dict(self) -> dict:
        return {
            "group": self.group, "name": self.name, "unit": self.unit, "samples": self.samples,
            "median": self.median, "target": str(self.target) if self.target else None,
            "met": self.met, "note": self.note, "error": self.error,
        }


def fmt(x: float | None) -> str:
    """Readable numbers: thousands separators for big ones, 3 significant digits else."""
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def table(figures: list[Figure]) -> str:
    """A fixed-width text table (also valid Markdown)."""
    header = ("group", "figure", "median", "unit", "min..max (n)", "target", "met", "notes")
    rows = []
    for f in figures:
        if f.error:
            spread, median = f"error: {f.error}", "-"
        else:
            spread = f"{fmt(min(f.samples))}..{fmt(max(f.samples))} ({len(f.samples)})" if f.samples else "-"
            median = fmt(f.median)
        met = {True: "yes", False: "NO", None: ""}[f.met]
        rows.append((f.group, f.name, median, f.unit, spread, str(f.target or ""), met, f.note))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])
