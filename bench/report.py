"""The markdown summary (results folder and ``docs/benchmarks.md``) from the JSON results."""

from __future__ import annotations

from typing import Any

from bench.common import fmt, summary
from bench.worker_overhead import WARM_PHASES

#: What each per-task phase is made of, and what would shorten it (quoted in the closing note).
PHASE_NOTES = {
    "queued_to_dispatched": "scheduler loop: from the TI's queued state to the executor's heartbeat "
    "handing it to the dispatcher thread; shortened by a shorter scheduler loop or queueing straight "
    "from the task's completion (mini-scheduler) into the executor.",
    "dispatched_to_received": "HTTP request on loopback; already small.",
    "received_to_started": "worker: pool hand-off and the supervisor's fork of the task process until it "
    "calls `PATCH /run` (the parsed DAG already sits in the pool process, worker/dag_cache.py). Alone this "
    "takes well under 0.1 s (worker overhead section); during a DAG run the task processes, supervisors, "
    "scheduler and API server compete for the cores, which is most of the rest.",
    "started_to_finished": "task process after `PATCH /run`: the task code, then the XCom push and "
    "`PATCH /state`, each an Execution API round trip (the DAG comes from the pool process's cache). Would "
    "be cut by fewer Execution API calls per task.",
    "finished_to_reported": "worker answer streamed back, then waiting for the scheduler's next executor "
    "`sync` (heartbeat); cut by waking the scheduler loop when an outcome arrives.",
    "finished_to_downstream_queued": "scheduler: marking the TI done, then the next scheduling loop "
    "evaluating the run and queueing downstream tasks; cut by a shorter idle sleep or an event-driven "
    "scheduler loop.",
    "reported_to_downstream_queued": "not on the critical path (downstream is queued on the task's own state "
    "update).",
    "queued_to_start": "queued -> task process running (Airflow records).",
    "start_to_end": "task process running -> finished (Airflow records).",
    "end_to_downstream_queued": "task end -> next task queued (Airflow records).",
}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _spread(stats: dict[str, Any]) -> str:
    return f"{fmt(stats['median'])} ({fmt(stats['min'], '')}-{fmt(stats['max'], '')})"


def _ratio(stats: dict[str, Any]) -> str:
    """Median ratio with its 95 % bootstrap interval."""
    ci = stats.get("ratio_ci") or {}
    if ci.get("ratio") is None:
        return fmt(stats.get("ratio_median_client"), "", 2)
    return f"{ci['ratio']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]"


def _e2e_table(e2e: dict[str, Any], dags: list[str]) -> list[str]:
    lines = [
        _row(
            [
                "DAG",
                "KnativeExecutor median (min-max)",
                "LocalExecutor median (min-max)",
                "ratio K/L [95 % CI]",
                "Airflow records K / L (median)",
                "runs K / L",
                "failed K / L",
            ]
        ),
        _row(["---"] * 7),
    ]
    for dag_id in dags:
        stats = e2e["by_dag"].get(dag_id)
        if not stats:
            continue
        k, loc = stats["knative"], stats["local"]
        lines.append(
            _row(
                [
                    f"`{dag_id}`",
                    _spread(k["client_s"]),
                    _spread(loc["client_s"]),
                    _ratio(stats),
                    f"{fmt(k['airflow_s']['median'])} / {fmt(loc['airflow_s']['median'])}",
                    f"{k['runs']} / {loc['runs']}",
                    f"{k['failed']} / {loc['failed']}",
                ]
            )
        )
    return lines


def _throughput_table(e2e: dict[str, Any], widths: list[int]) -> list[str]:
    lines = [
        _row(["width (depth 3)", "KnativeExecutor TI/s (median)", "LocalExecutor TI/s (median)"]),
        _row(["---"] * 3),
    ]
    for width in widths:
        stats = e2e["by_dag"].get(f"benchmark_w{width}_d3")
        if stats:
            lines.append(
                _row(
                    [
                        str(width),
                        fmt(stats["knative"]["throughput"]["median"], "", 2),
                        fmt(stats["local"]["throughput"]["median"], "", 2),
                    ]
                )
            )
    return lines


def _phase_table(per_task: dict[str, Any]) -> list[str]:
    """Airflow's own records for both systems side by side, then the KnativeExecutor's finer steps."""
    lines = [
        _row(
            [
                "phase (per task instance)",
                "KnativeExecutor median",
                "p90",
                "LocalExecutor median",
                "p90",
                "n K / L",
            ]
        ),
        _row(["---"] * 6),
    ]
    knative = per_task.get("knative", {}).get("phases", {})
    local = per_task.get("local", {}).get("phases", {})
    empty = {"median": None, "p90": None, "n": 0}
    for name in ("queued_to_start", "start_to_end", "end_to_downstream_queued"):
        k, loc = knative.get(name, empty), local.get(name, empty)
        lines.append(
            _row(
                [
                    f"`{name}` (Airflow records)",
                    fmt(k["median"]),
                    fmt(k["p90"]),
                    fmt(loc["median"]),
                    fmt(loc["p90"]),
                    f"{k['n']} / {loc['n']}",
                ]
            )
        )
    for name, stats in knative.items():
        if name in ("queued_to_start", "start_to_end", "end_to_downstream_queued"):
            continue
        lines.append(
            _row(
                [
                    f"`{name}` (KnativeExecutor steps)",
                    fmt(stats["median"]),
                    fmt(stats["p90"]),
                    "-",
                    "-",
                    f"{stats['n']} / -",
                ]
            )
        )
    return lines


def _targets(results: dict[str, Any]) -> list[str]:
    e2e, lines = results.get("e2e", {}), []
    by_dag = e2e.get("by_dag", {})
    for dag_id in ("compute_avg_distributed", "benchmark_w8_d3"):
        stats = by_dag.get(dag_id)
        if stats and (stats.get("ratio_ci") or {}).get("high") is not None:
            high = stats["ratio_ci"]["high"]
            lines.append(
                f"- `{dag_id}` KnativeExecutor / LocalExecutor median = {_ratio(stats)} "
                f"(target <= 1.0 upper bound included: {'met' if high <= 1.0 else 'missed'}; "
                f"stretch <= 0.8: {'met' if high <= 0.8 else 'missed'})"
            )
    family = {d: s for d, s in by_dag.items() if d.startswith("benchmark_w") and d != "benchmark_w8_d3"}
    if family:
        ratios = {d: s.get("ratio_median_client") for d, s in family.items()}
        above = sorted(d for d, r in ratios.items() if r is None or r > 1.0)
        lines.append(
            f"- families (width, depth): median ratio <= 1.0 for {len(ratios) - len(above)}/{len(ratios)} "
            f"(target: all{'; above: ' + ', '.join(f'`{d}`' for d in above) if above else ''})"
        )
    overhead = results.get("worker_overhead")
    if overhead:
        warm, fresh = overhead["warm"]["overhead"]["median"], overhead["fresh"]["overhead"]["median"]
        met = warm is not None and warm <= 0.05
        lines.append(
            f"- worker overhead median (received -> task code): warm {fmt(warm)} vs fresh interpreter "
            f"{fmt(fresh)} (target <= 0.050 s: {'met' if met else 'missed'})"
        )
    dispatch = results.get("dispatch")
    if dispatch:
        rate = dispatch["tasks_per_s"] or 0
        lines.append(
            f"- executor dispatch {rate:.0f} tasks/s over {dispatch['workloads']} workloads, peak RSS "
            f"{dispatch['rss_peak_mib']:.0f} MiB (+{dispatch['rss_growth_mib']:.0f} MiB) "
            f"(target >= 1,000 tasks/s: {'met' if rate >= 1000 else 'missed'})"
        )
    cold = results.get("coldstart")
    if cold and "benchmark_w1_d8" in cold["by_dag"]:
        ratio = cold["by_dag"]["benchmark_w1_d8"]["prewarmed_over_warm"]
        met = ratio.get("high") is not None and ratio["high"] <= 1.3
        lines.append(
            f"- `benchmark_w1_d8` pre-warmed cold / warm (scale to zero) = {_ci(ratio)} "
            f"(target <= 1.3: {'met' if met else 'missed'})"
        )
    routing = results.get("routing")
    if routing:
        size, target = routing["routing_bytes_max"], routing["routing_target_bytes"]
        per_10k = size * 10_000 / routing["services"]
        lines.append(
            f"- routing data for {routing['services']:,} tasks: {size / 1024:.0f} KiB "
            f"(target <= {target // 1024} KiB per 10,000 tasks: {'met' if per_10k <= target else 'missed'})"
        )
    lines.append(f"- failed or wrong runs: {results.get('failed_runs_total', 0)} (target 0)")
    return lines


def _cpu_text(cpu: dict[str, float] | None) -> str:
    """Which side kept a core busy during the dispatch run (1.0 = one whole core)."""
    if not cpu:
        return ""
    return (
        f"CPU over the run: dispatcher process {cpu['client_share']:.2f} cores, stub worker "
        f"{cpu['stub_share']:.2f} cores. "
    )


def _routing_section(routing: dict[str, Any] | None) -> list[str]:
    if not routing:
        return []
    lines = [
        f"## Routing data and chart size ({routing['dags']:,} DAGs x {routing['tasks']} tasks)",
        "",
        f"`make generate`: {fmt(routing['generate_s'])}, chart data "
        f"{routing['chart_data_bytes'] / 1e6:.1f} MB (`chart/files/services.yaml`).",
        "",
        _row(["worker mode", "`helm template`", "manifests", "routing ConfigMap data"]),
        _row(["---"] * 4),
    ]
    for mode, figures in routing["modes"].items():
        lines.append(
            _row(
                [
                    mode,
                    fmt(figures["template_s"]),
                    f"{figures['manifest_bytes'] / 1e6:.1f} MB",
                    f"{figures['routing_bytes'] / 1024:.0f} KiB",
                ]
            )
        )
    return [*lines, ""]


def _ci(ratio: dict[str, Any]) -> str:
    if ratio.get("ratio") is None:
        return "n/a"
    return f"{ratio['ratio']:.2f} [{ratio['low']:.2f}, {ratio['high']:.2f}]"


def _warm_phases_section(phases: dict[str, Any] | None) -> list[str]:
    """Where the warm worker's overhead goes: each mark's median time after the request was received."""
    if not phases:
        return []
    lines = [
        "Where the warm overhead goes (each mark: median time after the worker received the request; "
        "the task process starts while `PATCH /run` is on its way, so marks overlap):",
        "",
        _row(["mark", "median", "p90", "n"]),
        _row(["---"] * 4),
    ]
    for name, label in WARM_PHASES.items():
        stats = phases.get(name) or {}
        lines.append(_row([label, fmt(stats.get("median")), fmt(stats.get("p90")), str(stats.get("n", 0))]))
    return [*lines, ""]


def _coldstart_section(cold: dict[str, Any] | None) -> list[str]:
    """Cold vs warm vs pre-warmed on the depth family (scale-to-zero stacks)."""
    if not cold:
        return []
    lines = [
        "## Cold starts: cold vs warm vs pre-warmed (services scale to zero, depth family)",
        "",
        _row(
            [
                "DAG",
                "warm median",
                "cold, pre-warm off",
                "cold, pre-warmed",
                "cold / warm [95 % CI]",
                "pre-warmed / warm [95 % CI]",
                "failed",
            ]
        ),
        _row(["---"] * 7),
    ]
    for dag_id in cold["dags"]:
        stats = cold["by_dag"][dag_id]
        lines.append(
            _row(
                [
                    f"`{dag_id}`",
                    fmt(stats["warm"]["median"]),
                    fmt(stats["cold"]["median"]),
                    fmt(stats["prewarmed"]["median"]),
                    _ci(stats["cold_over_warm"]),
                    _ci(stats["prewarmed_over_warm"]),
                    str(stats["failed"]),
                ]
            )
        )
    starts = [c["start_s"] for runs in cold["cold_starts"].values() for c in runs]
    woken = sum(1 for runs in cold["cold_starts"].values() for c in runs if "readyz" in c["woken_by"])
    start_stats = summary(starts)
    lines += [
        "",
        f"{cold['rounds']} round(s) per DAG; each round scales every worker to zero, then runs cold on both "
        "stacks, then warm on both. Warm = both stacks' warm runs. Worker cold start (activator: process "
        f"start -> readiness 200): median {fmt(start_stats['median'])}, max {fmt(start_stats['max'])} over "
        f"{start_stats['n']} starts, {woken} of them by a pre-warm request. Pre-warm requests sent: "
        + ", ".join(f"{name} {count}" for name, count in cold["prewarm_requests"].items())
        + ". How pre-warm behaves on a cluster: [docs/prewarm.md](prewarm.md).",
        "",
    ]
    return lines


def _sections(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    e2e = results.get("e2e")
    if e2e:
        lines += [
            "## End to end (client: trigger -> terminal state; seconds)",
            "",
            *_e2e_table(e2e, e2e["dags"]),
            "",
            "Airflow records = dag run `start_date` -> `end_date`. Ratio = median client time "
            "KnativeExecutor / LocalExecutor, same invocation, runs alternating.",
            "",
            "### Throughput vs width ((width + 2) / end-to-end time)",
            "",
            *_throughput_table(e2e, results["profile"]["widths"]),
            "",
            "![latency vs depth](latency_vs_depth.png) ![throughput vs width](throughput_vs_width.png)",
            "",
        ]
    per_task = results.get("per_task")
    if per_task:
        lines += [
            f"## Per task ({', '.join(per_task['dags'])}, measured runs)",
            "",
            *_phase_table(per_task),
            "",
        ]
        largest = per_task.get("knative", {}).get("largest_phase")
        if largest:
            lines += [
                f"Largest per-task cost on the KnativeExecutor path: `{largest}` - {PHASE_NOTES[largest]}",
                "",
            ]
    overhead = results.get("worker_overhead")
    if overhead:
        warm, fresh = overhead["warm"], overhead["fresh"]
        lines += [
            "## Worker overhead (request received -> first line of task code)",
            "",
            _row(["receiver", "median", "min", "max", "n", "failed"]),
            _row(["---"] * 6),
            _row(
                [
                    "warm worker",
                    fmt(warm["overhead"]["median"]),
                    fmt(warm["overhead"]["min"]),
                    fmt(warm["overhead"]["max"]),
                    str(warm["overhead"]["n"]),
                    str(warm["failed"]),
                ]
            ),
            _row(
                [
                    "fresh interpreter (`execute_workload`)",
                    fmt(fresh["overhead"]["median"]),
                    fmt(fresh["overhead"]["min"]),
                    fmt(fresh["overhead"]["max"]),
                    str(fresh["overhead"]["n"]),
                    str(fresh["failed"]),
                ]
            ),
            "",
            f"Warm worker, received -> task process started (`PATCH /run`): median "
            f"{fmt(warm['received_to_task_process_started']['median'])}. Interpreter start + imports only "
            f"(`{overhead['import_only']['command']}`): median "
            f"{fmt(overhead['import_only']['seconds']['median'])}.",
            "",
        ]
        lines += _warm_phases_section(warm.get("phases"))
    lines += _coldstart_section(results.get("coldstart"))
    lines += _routing_section(results.get("routing"))
    dispatch = results.get("dispatch")
    if dispatch:
        submit = dispatch["submit_call_s"]
        lines += [
            "## Executor dispatch (stub worker on loopback)",
            "",
            f"{dispatch['completed']}/{dispatch['workloads']} workloads in {fmt(dispatch['elapsed_s'])} = "
            f"**{dispatch['tasks_per_s']:.0f} tasks/s** (parallelism {dispatch['parallelism']}, "
            f"{dispatch['failed']} failed). `submit()` on the scheduler thread: median "
            f"{submit['median'] * 1e6:.0f} us, max {submit['max'] * 1e3:.1f} ms. "
            + _cpu_text(dispatch.get("cpu"))
            + f"RSS {dispatch['rss_before_mib']:.0f} -> peak {dispatch['rss_peak_mib']:.0f} MiB; "
            "per 1,000 tasks: " + ", ".join(f"{c['rss_mib']:.0f}" for c in dispatch["checkpoints"]) + " MiB.",
            "",
        ]
    gateway = results.get("gateway")
    if gateway:
        lat = gateway["latency_s"]
        lines += [
            "## Gateway (concurrent `runWorkflow` on `compute_avg_distributed`, KnativeExecutor stack)",
            "",
            f"{gateway['correct']}/{gateway['calls']} answered correctly; wall {fmt(gateway['wall_s'])}; "
            f"latency min {fmt(lat['min'])}, median {fmt(lat['median'])}, p90 {fmt(lat['p90'])}, "
            f"max {fmt(lat['max'])}.",
            "",
        ]
    return lines


METHOD = """## Method

- **Systems**: the local stack (`airflow_knative.local.LocalStack`) twice, in the same invocation: with the
  KnativeExecutor and its warm workers, and with Airflow's stock LocalExecutor. Same Airflow, same DAG
  folder, same scheduler settings, same `[core] parallelism`, one PostgreSQL server (one database each).
- **End to end**: after a warm-up (every DAG in `full`; the two headline DAGs, which load both DAG
  files, in `quick`), runs alternate A B A B (same input for both within a
  round). Client time = trigger request sent -> terminal state seen (polling every 50 ms); Airflow time =
  dag run `start_date` -> `end_date`. Every run's result is read back from XCom and checked.
- **Per task**: timestamps from the components themselves: TI `queued_when` (Airflow), `dispatched_at` and
  `reported_at` (executor log lines `knative_task_done` / `knative_task_reported`), `received_at`,
  `started_at` (task's `PATCH /run` seen by the worker), `finished_at` (worker), downstream `queued_when`.
- **Worker overhead**: `bench_probe_*` returns `time.time()` at its first line; overhead = that minus the
  receiver's own `received_at`. Warm = the product's worker; fresh = `bench/fresh_worker.py` running each
  real workload with `python -m airflow.sdk.execution_time.execute_workload` (pod start not included).
- **Dispatch**: the real `Dispatcher` in this process, a scheduler-like loop keeping `parallelism` tasks in
  flight, a stub worker process answering `accepted` + `finished` at once.
- **Ratios**: median KnativeExecutor client time / median LocalExecutor client time; the interval is a
  95 % percentile bootstrap (10,000 resamples, each system's runs resampled on their own).
- **Cold starts**: two more KnativeExecutor stacks, started after the two above stopped, with
  `--scale-to-zero` (a worker per service, started by the local activator on its first request, as
  Knative's activator does) and `[knative_executor] prewarm` on and off. Each round scales every worker
  to zero, runs each DAG cold on both, then warm on both.
- **Routing data**: `bench/generate_bench.py` (`make bench-generate`): that many generated DAG files, the
  real generator, `helm template` in both worker modes; the size of the routing ConfigMap's data.
- **Gateway**: concurrent `POST /runWorkflow/compute_avg_distributed` on the KnativeExecutor stack, each with
  its own input, each answer checked.
- The machine is shared: other processes may have been running; see the load average in Setup.
"""


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# Benchmarks: KnativeExecutor vs stock LocalExecutor",
        "",
        f"Profile `{results['profile']['name']}`, {results['started']}, "
        f"wall time {fmt(results['wall_s'], 's', 0)}. Command: `{results['command']}`.",
        "",
        "## Setup",
        "",
        f"- Machine: {env['cpu']}, {env['cores']} cores, {env['memory_gib']:.0f} GiB, {env['os']}",
        f"- Versions: Python {env['python']}, Apache Airflow {env['airflow']}, "
        f"{env['postgres'] or 'no PostgreSQL'}, airflow-knative {env['git']}",
        f"- Database: {results['database']['description']}",
        f"- Settings (both systems): {results['settings']}",
        f"- Load average at start: {', '.join(f'{x:.1f}' for x in env.get('load_average_at_start', []))}",
        "",
        METHOD,
        "## Targets",
        "",
        *_targets(results),
        "",
        *_sections(results),
    ]
    return "\n".join(lines).rstrip() + "\n"
