"""The report's PNG figures: each method's points against the DEEPTHINK call fraction and device-seconds.

:func:`londi.evaluation.report.write_report` computes an env's numbers (:func:`londi.evaluation.curves.env_section`)
and hands them here; plotting is kept apart so that the tables need no matplotlib, which is imported
only when a figure is drawn (with the Agg canvas, leaving pyplot's global backend alone).
"""
from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from londi.core.io import atomic_write_bytes


def plot_section(
    section: Mapping[str, Any], *, metric: str, x_key: str, x_label: str, path: Path
) -> None:
    """One PNG: every method's points (perf against ``x_key``) with CI error bars."""
    # The object-oriented API with the Agg canvas leaves pyplot's global backend untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in section["rows"]:
        by_method[r["method"]].append(r)
    for method, rows in by_method.items():
        xs = np.array(
            [r["device_seconds"]["total"] if x_key == "device_seconds" else r[x_key] for r in rows],
            dtype=float,
        )
        ys = np.array([r[metric] for r in rows], dtype=float)
        ci = np.array([r[f"{metric}_ci"] for r in rows], dtype=float).reshape(-1, 2)
        keep = np.isfinite(xs) & np.isfinite(ys)
        if not keep.any():
            continue
        xs, ys, ci = xs[keep], ys[keep], ci[keep]
        order = np.argsort(xs, kind="stable")
        xs, ys, ci = xs[order], ys[order], ci[order]
        # Error bars are distances from the mean; a missing CI draws no bar.
        lower = np.where(np.isfinite(ci[:, 0]), np.maximum(ys - ci[:, 0], 0.0), 0.0)
        upper = np.where(np.isfinite(ci[:, 1]), np.maximum(ci[:, 1] - ys, 0.0), 0.0)
        ax.errorbar(
            xs, ys, yerr=np.vstack([lower, upper]), marker="o", capsize=3,
            linestyle="-" if len(xs) > 1 else "none", label=method,
        )
    ref = section["reference"]
    # Dashed levels of the two ends of the curve, as in RouteLLM's plots.
    for key, color in (("quick", "grey"), ("deepthink", "red")):
        level = ref.get(f"{key}_{metric}")
        if ref.get(f"{key}_method") and level is not None and math.isfinite(level):
            ax.axhline(level, color=color, linestyle="--", linewidth=0.8, alpha=0.6)
    ax.set_xlabel(x_label)
    ax.set_ylabel("success rate" if metric == "success" else "mean return")
    ax.set_title(str(section["env"]))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def write_section_plots(section: Mapping[str, Any], *, metric: str, out: Path, suffix: str = "") -> list[tuple[str, str]]:
    """Write an env's two plots into ``out`` (``suffix`` tells envs apart); returns their (title, file name)."""
    plots = [
        (f"{metric} vs DEEPTHINK call fraction", f"{metric}_vs_call_frac{suffix}.png"),
        (f"{metric} vs device-seconds per episode", f"{metric}_vs_device_seconds{suffix}.png"),
    ]
    plot_section(section, metric=metric, x_key="deepthink_call_frac",
                 x_label="DEEPTHINK call fraction (calls / steps)", path=out / plots[0][1])
    plot_section(section, metric=metric, x_key="device_seconds",
                 x_label="device-seconds per episode (QUICK + DEEPTHINK + switch)", path=out / plots[1][1])
    return plots


__all__ = ["plot_section", "write_section_plots"]
