"""How much each profile measures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HEADLINE_DAGS = ("compute_avg_distributed", "benchmark_w8_d3")
WIDTHS = [1, 2, 4, 8, 16, 24, 48]
DEPTHS = [2, 4, 8, 16]


@dataclass(frozen=True)
class Profile:
    name: str
    headline_runs: int
    family_runs: int
    warmup_runs: int
    widths: list[int] = field(default_factory=lambda: list(WIDTHS))
    depths: list[int] = field(default_factory=lambda: list(DEPTHS))
    #: Probe tasks through a fresh interpreter (each several seconds) and through the warm worker
    #: (each about a second; more of them, since their spread is tens of ms).
    overhead_runs: int = 8
    overhead_warm_runs: int = 30
    dispatch_workloads: int = 10_000
    dispatch_parallelism: int = 64
    gateway_calls: int = 50
    headline_dags: tuple[str, ...] = HEADLINE_DAGS
    #: Warm up every DAG (True) or only the headline DAGs, which load both DAG files (quick).
    warm_up_all: bool = True
    #: Cold vs warm vs pre-warmed (scale-to-zero stacks): depths of ``benchmark_w1_d*``, rounds each.
    cold_depths: list[int] = field(default_factory=lambda: [2, 8])
    cold_rounds: int = 3
    #: Routing data size: `make generate` + `helm template` for this many DAGs x 10 tasks.
    routing_dags: int = 1000

    def dags(self) -> list[tuple[str, int]]:
        """(dag_id, measured runs per system), headline DAGs first."""
        plan = [(dag_id, self.headline_runs) for dag_id in self.headline_dags]
        plan += [
            (f"benchmark_w{w}_d3", self.family_runs)
            for w in self.widths
            if f"benchmark_w{w}_d3" not in self.headline_dags
        ]
        plan += [(f"benchmark_w1_d{d}", self.family_runs) for d in self.depths if d != 3]
        return [(dag_id, runs) for dag_id, runs in plan if runs > 0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES = {
    "quick": Profile(
        "quick", headline_runs=10, family_runs=2, warmup_runs=1, warm_up_all=False, gateway_calls=20
    ),
    "full": Profile(
        "full",
        headline_runs=15,
        family_runs=10,
        warmup_runs=2,
        overhead_runs=20,
        overhead_warm_runs=60,
        cold_depths=[2, 4, 8, 16],
        cold_rounds=5,
    ),
    # The smoke test: one tiny DAG, one run per system, tiny side benchmarks.
    "smoke": Profile(
        "smoke",
        headline_runs=1,
        family_runs=0,
        warmup_runs=0,
        widths=[],
        depths=[],
        overhead_runs=1,
        overhead_warm_runs=1,
        dispatch_workloads=200,
        gateway_calls=2,
        headline_dags=("compute_avg_distributed",),
        cold_depths=[2],
        cold_rounds=1,
        routing_dags=5,
    ),
}
