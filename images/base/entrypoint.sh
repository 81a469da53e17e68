#!/usr/bin/env bash
# Entrypoint of the stand-in base image, with the command dispatch of the
# official apache/airflow image's /entrypoint:
#   bash ... / python ...  run as given;
#   airflow <command> ...  and  <command> ...  run `airflow <command> ...`;
#   no arguments           shows `airflow --help`.
# The chart always sets `command`, which replaces this entrypoint entirely; it
# matters only for `docker run IMAGE <command>` by hand. The official script's
# database wait and _AIRFLOW_* bootstrap variables are not implemented (see
# docs/containers.md).
set -euo pipefail

if [[ $# -eq 0 ]]; then
    exec airflow --help
fi

case "$1" in
    bash | python | python3 | airflow-knative)
        exec "$@"
        ;;
    airflow)
        shift
        exec airflow "$@"
        ;;
    *)
        exec airflow "$@"
        ;;
esac
