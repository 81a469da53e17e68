"""PNG plots: both systems on the same axes, violins per DAG (as in the vHive fork's figures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"knative": "tab:blue", "local": "tab:orange"}
LABELS = {"knative": "KnativeExecutor (warm workers)", "local": "LocalExecutor (stock)"}


def _values(runs: list[dict[str, Any]], system: str, dag_id: str, metric: str) -> list[float]:
    return [
        r[metric]
        for r in runs
        if r["system"] == system and r["dag_id"] == dag_id and r.get(metric) is not None
    ]


def _violins(
    ax: Any, groups: Sequence[tuple[str, list[float]]], positions: Sequence[float], system: str
) -> None:
    present = [(p, v) for p, (_, v) in zip(positions, groups, strict=True) if v]
    if not present:
        return
    parts = ax.violinplot(
        [v for _, v in present], positions=[p for p, _ in present], widths=0.35, showmedians=True
    )
    for body in parts["bodies"]:
        body.set_facecolor(COLOURS[system])
        body.set_alpha(0.5)
    for name in ("cmedians", "cmins", "cmaxes", "cbars"):
        parts[name].set_color(COLOURS[system])
    for p, v in present:
        ax.scatter([p] * len(v), v, s=8, color=COLOURS[system], zorder=3)


def _family_plot(
    runs: list[dict[str, Any]],
    dags: list[tuple[str, str]],
    metric_of: Any,
    ylabel: str,
    xlabel: str,
    title: str,
    path: Path,
) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for offset, system in ((-0.2, "knative"), (0.2, "local")):
        groups = [
            (label, [metric_of(dag_id, r) for r in _values(runs, system, dag_id, "client_s")])
            for dag_id, label in dags
        ]
        _violins(ax, groups, [i + offset for i in range(len(dags))], system)
        ax.plot([], [], color=COLOURS[system], label=LABELS[system], linewidth=6, alpha=0.5)
    ax.set_xticks(range(len(dags)), [label for _, label in dags])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(runs: list[dict[str, Any]], depths: list[int], widths: list[int], out: Path) -> list[Path]:
    measured = [r for r in runs if r["phase"] == "measure" and r.get("correct")]
    paths = [out / "latency_vs_depth.png", out / "throughput_vs_width.png", out / "e2e_headline.png"]
    _family_plot(
        measured,
        [(f"benchmark_w1_d{d}", str(d)) for d in depths],
        lambda _d, s: s,
        "end-to-end latency (s, client)",
        "depth (width 1)",
        "Latency vs depth",
        paths[0],
    )
    _family_plot(
        measured,
        [(f"benchmark_w{w}_d3", str(w)) for w in widths],
        lambda dag_id, s: (int(dag_id.split("_w")[1].split("_")[0]) + 2) / s,
        "throughput (task instances / s)",
        "width (depth 3)",
        "Throughput vs width: (width + 2) / end-to-end time",
        paths[1],
    )
    _family_plot(
        measured,
        [("compute_avg_distributed", "compute_avg_distributed"), ("benchmark_w8_d3", "benchmark_w8_d3")],
        lambda _d, s: s,
        "end-to-end latency (s, client)",
        "",
        "Headline DAGs",
        paths[2],
    )
    return paths
