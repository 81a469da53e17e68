# Benchmarks (included by the Makefile); results in bench/results/<run>/, latest in bench/results/latest.
#   make bench       - quick profile (< 10 min on 2 cores): KnativeExecutor vs LocalExecutor side by side,
#                      per-task phases, worker overhead, executor dispatch, gateway; regenerates docs/benchmarks.md
#   make bench-full  - the same with more runs per DAG
# Both start a throwaway PostgreSQL (Debian package `postgresql`, installed when missing and root).

.PHONY: bench bench-full

bench: $(STAMP)
	$(PY) -m bench --profile quick --docs docs/benchmarks.md

bench-full: $(STAMP)
	$(PY) -m bench --profile full
