"""A figure next to its ceiling, the ratio, the target and the verdict: one row of the summary."""

from __future__ import annotations

from typing import Any

from bench.stats import ratio

PASS, MISS, INFO = "PASS", "MISS", "—"


def check(
    figure: str,
    value: float,
    unit: str,
    *,
    ceiling: float | None = None,
    ceiling_label: str = "",
    target: tuple[str, float] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """``target``: ("ratio>=", 0.75) compares value/ceiling; (">=", 50000) or ("<=", 0.5) the value.
    ``note``: what a reader must know to read the verdict (listed under the summary)."""
    r = ratio(value, ceiling)
    verdict = INFO
    target_text = ""
    if target is not None:
        kind, threshold = target
        if kind.startswith("ratio"):
            compared = r
            target_text = f"ratio {kind[5:]} {threshold:g}"
        else:
            compared = value
            target_text = f"{kind} {threshold:,g} {unit}"
        if compared is None:
            verdict = MISS
        elif kind.endswith(">="):
            verdict = PASS if compared >= threshold else MISS
        else:
            verdict = PASS if compared <= threshold else MISS
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "ceiling": ceiling,
        "ceiling_label": ceiling_label,
        "ratio": r,
        "target": target_text,
        "verdict": verdict,
        "note": note,
    }
