"""``python -m bench --profile quick|full``: everything the issue asks for, in one invocation."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from airflow_knative.airflow_rest import AirflowClient
from airflow_knative.local.stack import LocalStack
from bench import coldstart, dispatch, gateway_load, generate_bench, per_task, plots, report, worker_overhead
from bench.coldstart import COLD_SYSTEMS
from bench.common import bootstrap_ratio, summary
from bench.e2e import E2ERunner, RunRecord
from bench.postgres import PostgresUnavailableError, TempPostgres, start_temp_postgres
from bench.profiles import PROFILES, Profile
from bench.stacks import (
    PASSWORD,
    ROOT,
    SYSTEMS,
    USER,
    StackSettings,
    StackThreads,
    open_api,
    prepare_dags,
    stack_config,
)

SECTIONS = ("e2e", "overhead", "gateway", "coldstart", "dispatch", "routing")
#: Every database the benchmark may need: the two systems, then the two scale-to-zero stacks.
DATABASES = (*SYSTEMS, *COLD_SYSTEMS)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment(pg_version: str) -> dict[str, Any]:
    import airflow

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": psutil.virtual_memory().total / 2**30,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "airflow": airflow.__version__,
        "postgres": pg_version,
        "git": git or "unknown",
        "load_average_at_start": os.getloadavg(),
    }


def _e2e_aggregate(records: list[RunRecord], plan: list[tuple[str, int]]) -> dict[str, Any]:
    by_dag: dict[str, Any] = {}
    for dag_id, _ in plan:
        stats: dict[str, Any] = {}
        for system in SYSTEMS:
            runs = [r for r in records if r.dag_id == dag_id and r.system == system and r.phase == "measure"]
            good = [r for r in runs if r.correct]
            width = int(dag_id.split("_w")[1].split("_")[0]) if dag_id.startswith("benchmark_w") else None
            stats[system] = {
                "runs": len(runs),
                "failed": len(runs) - len(good),
                "client_s": summary(r.client_s for r in good if r.client_s),
                "airflow_s": summary(r.airflow_s for r in good if r.airflow_s),
                "throughput": summary((width + 2) / r.client_s for r in good if width and r.client_s),
            }
        clients = {
            system: [
                r.client_s
                for r in records
                if r.dag_id == dag_id and r.system == system and r.phase == "measure" and r.correct
            ]
            for system in SYSTEMS
        }
        ci = bootstrap_ratio(clients["knative"], clients["local"])
        stats["ratio_median_client"] = ci["ratio"]
        stats["ratio_ci"] = ci
        by_dag[dag_id] = stats
    return {
        "dags": [d for d, _ in plan],
        "by_dag": by_dag,
        "failed_runs": sum(1 for r in records if not r.correct),
        "runs": [r.as_dict() for r in records],
    }


def _per_task(
    records: list[RunRecord], stacks: dict[str, LocalStack], apis: dict[str, AirflowClient], dags: list[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {"dags": dags}
    for system in SYSTEMS:
        timings = per_task.scheduler_timings(stacks[system].config.log_dir / "scheduler.log")
        downstream = {dag_id: apis[system].tasks(dag_id) for dag_id in dags}
        rows = []
        for record in records:
            if (
                record.system == system
                and record.dag_id in dags
                and record.phase == "measure"
                and record.correct
            ):
                for row in per_task.task_rows(record.as_dict(), downstream[record.dag_id], timings):
                    rows.append({"dag_id": record.dag_id, "run_id": record.run_id, **row})
        phases = per_task.phase_summary(rows)
        phase_set = per_task.KNATIVE_PHASES if system == "knative" else per_task.AIRFLOW_PHASES
        result[system] = {
            "phases": phases,
            "largest_phase": per_task.largest_phase(phases, phase_set),
            "task_instances": rows,
        }
    return result


def _setup_database(kind: str, out: Path) -> tuple[TempPostgres | None, dict[str, str], dict[str, Any]]:
    """Return the server (if any), a URL per system and a description."""
    if kind in ("postgres", "auto"):
        try:
            pg = start_temp_postgres()
            urls = {system: pg.create_database(f"af_{system}") for system in DATABASES}
            return (
                pg,
                urls,
                {
                    "kind": "postgresql",
                    "description": f"one PostgreSQL server on 127.0.0.1:{pg.port} ({pg.version}), databases "
                    + ", ".join(f"`af_{s}`" for s in SYSTEMS)
                    + "; every figure here used it",
                    "version": pg.version,
                },
            )
        except (PostgresUnavailableError, OSError, subprocess.SubprocessError) as exc:
            if kind == "postgres":
                raise
            say(f"PostgreSQL unavailable ({exc}); falling back to SQLite")
    urls = {s: f"sqlite:///{out / 'stacks' / s / 'airflow' / 'airflow.db'}" for s in DATABASES}
    return (
        None,
        urls,
        {
            "kind": "sqlite",
            "version": "",
            "description": "SQLite (one file per system) - FALLBACK: SQLite's 1-second now() adds up to "
            "1 s per run",
        },
    )


def _run_e2e(profile: Profile, apis: dict[str, AirflowClient]) -> E2ERunner:
    runner = E2ERunner(apis, progress=say)
    plan = profile.dags()
    say(f"warm-up: {profile.warmup_runs} run(s) of each DAG per system")
    warm = plan if profile.warm_up_all else [(d, r) for d, r in plan if d in profile.headline_dags]
    for dag_id, _ in warm:
        runner.run_dag(dag_id, profile.warmup_runs, phase="warmup")
    for dag_id, runs in plan:
        runner.run_dag(dag_id, runs)
    return runner


def _stop_database(pg: TempPostgres | None) -> None:
    if pg is not None:
        pg.stop()


def _run_coldstart(
    profile: Profile, out: Path, urls: dict[str, str], settings: StackSettings
) -> dict[str, Any]:
    """Two scale-to-zero stacks (pre-warm on / off), after the main stacks stopped."""
    dags_folder = prepare_dags(out / "dags")
    stacks = {
        name: LocalStack(
            stack_config(
                "knative",
                out / "stacks" / name,
                dags_folder,
                urls[name],
                settings,
                scale_to_zero=True,
                prewarm=prewarm,
            )
        )
        for name, prewarm in COLD_SYSTEMS.items()
    }
    threads = StackThreads(stacks)
    say("cold starts: starting two scale-to-zero stacks (pre-warm on / off) ...")
    try:
        threads.start_all()
        apis = {name: open_api(stack) for name, stack in stacks.items()}
        dags = [f"benchmark_w1_d{d}" for d in profile.cold_depths]
        for api in apis.values():
            for dag_id in dags:
                api.unpause(dag_id)
        result = coldstart.measure(stacks, apis, dags, profile.cold_rounds, say)
        for api in apis.values():
            api.close()
        return result
    finally:
        say("stopping the scale-to-zero stacks ...")
        threads.stop_all()


def run(profile: Profile, out: Path, database: str, sections: set[str], command: str) -> dict[str, Any]:
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    settings = StackSettings()
    pg, urls, db_info = _setup_database(database, out)
    results: dict[str, Any] = {
        "profile": profile.as_dict(),
        "command": command,
        "database": db_info,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings.describe(),
        "environment": environment(db_info["version"]),
    }
    threads: StackThreads | None = None
    try:
        if sections & {"e2e", "overhead", "gateway"}:
            dags_folder = prepare_dags(out / "dags")
            stacks = {
                s: LocalStack(stack_config(s, out / "stacks" / s, dags_folder, urls[s], settings))
                for s in SYSTEMS
            }
            threads = StackThreads(stacks)
            say(f"starting both stacks ({db_info['kind']}) ...")
            threads.start_all()
            apis = {s: open_api(stacks[s]) for s in SYSTEMS}
            for api in apis.values():
                for dag_id in stacks["knative"].dag_ids:
                    api.unpause(dag_id)
            if "e2e" in sections:
                runner = _run_e2e(profile, apis)
                plan = profile.dags()
                results["e2e"] = _e2e_aggregate(runner.records, plan)
                results["per_task"] = _per_task(
                    runner.records, stacks, apis, [d for d in profile.headline_dags if d in dict(plan)]
                )
            if "overhead" in sections:
                say("worker overhead: warm worker vs fresh interpreter ...")
                results["worker_overhead"] = worker_overhead.measure(
                    stacks["knative"],
                    apis["knative"],
                    profile.overhead_runs,
                    profile.overhead_warm_runs,
                    out / "logs",
                )
            if "gateway" in sections:
                say(f"gateway: {profile.gateway_calls} concurrent runWorkflow calls ...")
                results["gateway"] = gateway_load.measure(
                    stacks["knative"].config.gateway_url, (USER, PASSWORD), profile.gateway_calls
                )
            for api in apis.values():
                api.close()
            say("stopping both stacks ...")
            threads.stop_all()
            threads = None
        # Only after the two stacks above stopped (less noise), and only if they did not fail.
        if "coldstart" in sections:
            results["coldstart"] = _run_coldstart(profile, out, urls, settings)
    finally:
        if threads is not None:
            say("stopping both stacks ...")
            threads.stop_all()
        _stop_database(pg)
    if "dispatch" in sections:
        say(f"executor dispatch: {profile.dispatch_workloads} workloads to a stub worker ...")
        results["dispatch"] = dispatch.measure(
            profile.dispatch_workloads, profile.dispatch_parallelism, out / "logs"
        )
    if "routing" in sections:
        say(f"routing data: make generate + helm template for {profile.routing_dags} DAGs x 10 tasks ...")
        results["routing"] = generate_bench.measure(profile.routing_dags, 10, check=False)
    results["failed_runs_total"] = (
        results.get("e2e", {}).get("failed_runs", 0)
        + sum(results.get("worker_overhead", {}).get(k, {}).get("failed", 0) for k in ("warm", "fresh"))
        + results.get("gateway", {}).get("failed", 0)
        + (results.get("dispatch", {}).get("failed", 0))
        + results.get("coldstart", {}).get("failed_runs", 0)
    )
    results["wall_s"] = time.time() - started
    return results


def write_outputs(results: dict[str, Any], out: Path, docs: Path | None) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    if "e2e" in results:
        plots.write_plots(
            results["e2e"]["runs"], results["profile"]["depths"], results["profile"]["widths"], out
        )
    text = report.markdown(results)
    (out / "summary.md").write_text(text)
    if docs is not None:
        note = (
            f"Plots and raw JSON are written to `{out.parent.name}/<run>/` "
            "(`bench/results/latest/`), not committed."
        )
        docs.write_text(
            text.replace(
                "![latency vs depth](latency_vs_depth.png) ![throughput vs width](throughput_vs_width.png)",
                note,
            )
        )
    latest = out.parent / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out.name)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--database",
        choices=("postgres", "sqlite", "auto"),
        default="postgres",
        help="postgres (default), sqlite, or auto (PostgreSQL, else SQLite, said in the results)",
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument(
        "--docs", type=Path, default=None, help="also write the summary here (docs/benchmarks.md)"
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="only re-render summary, plots (and --docs) from RUN_DIR"
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        run_dir = args.render.resolve()
        write_outputs(json.loads((run_dir / "results.json").read_text()), run_dir, args.docs)
        return 0
    # SIGTERM/SIGINT raise SystemExit so that every `finally` stops the stacks and PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if unknown := sections - set(SECTIONS):
        parser.error(f"unknown sections: {sorted(unknown)}")
    if "routing" in sections:
        generate_bench.find_helm()  # the last section: a missing helm must stop the run now, not 20 min in
    out = args.out.resolve() / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{args.profile}"
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    say(f"profile {args.profile}, results in {out}")
    results = run(PROFILES[args.profile], out, args.database, sections, command)
    write_outputs(results, out, args.docs)
    say(
        f"done in {results['wall_s']:.0f}s; failed or wrong runs: {results['failed_runs_total']}; "
        f"summary: {out / 'summary.md'}"
    )
    return 0 if results["failed_runs_total"] == 0 else 1
