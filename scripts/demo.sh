#!/usr/bin/env bash
# Quick start, part one: install and run the main job on the embedded default
# (SQLite, a local MLflow store, the example catalog, the simulator). Extra arguments go to
# `campopt demo`, e.g. `bash scripts/demo.sh --days 30 --out /tmp/demo`.
source "$(dirname "$0")/env.sh"
campopt demo "$@"
