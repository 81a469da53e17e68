"""Gateway: N concurrent ``POST /runWorkflow/compute_avg_distributed`` calls, each with its own input.

Every answer must be 200 with ``output`` equal to the mean of its input.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from bench.common import summary

DAG_ID = "compute_avg_distributed"


async def _call(client: httpx.AsyncClient, data: list[int]) -> dict[str, Any]:
    began = time.perf_counter()
    try:
        response = await client.post(f"/runWorkflow/{DAG_ID}", json={"input": data})
        body = response.json()
        output = body.get("output")
        expected = sum(data) / len(data)
        correct = (
            response.status_code == 200 and isinstance(output, int | float) and abs(output - expected) < 1e-9
        )
        return {
            "status": response.status_code,
            "latency_s": time.perf_counter() - began,
            "correct": correct,
            "output": output,
            "expected": expected,
            "run_id": body.get("run_id"),
        }
    except (httpx.HTTPError, ValueError) as exc:
        return {
            "status": None,
            "latency_s": time.perf_counter() - began,
            "correct": False,
            "error": repr(exc),
        }


async def _load(url: str, auth: tuple[str, str], calls: int, seed: int) -> tuple[list[dict[str, Any]], float]:
    rng = random.Random(seed)
    inputs = [[rng.randint(-100, 100) for _ in range(rng.randint(2, 8))] for _ in range(calls)]
    limits = httpx.Limits(max_connections=calls)
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=600.0, limits=limits) as client:
        began = time.perf_counter()
        results = await asyncio.gather(*(_call(client, data) for data in inputs))
        return list(results), time.perf_counter() - began


def measure(url: str, auth: tuple[str, str], calls: int, seed: int = 7) -> dict[str, Any]:
    results, wall = asyncio.run(_load(url, auth, calls, seed))
    return {
        "calls": calls,
        "correct": sum(1 for r in results if r["correct"]),
        "failed": sum(1 for r in results if not r["correct"]),
        "wall_s": wall,
        "latency_s": summary(r["latency_s"] for r in results),
        "results": results,
    }
