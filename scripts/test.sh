#!/usr/bin/env bash
# Quick start, part two: install with the dev extras and run the test suite.
# Runs on SQLite always and on PostgreSQL when CAMPAIGN_TEST_POSTGRES_URL or 127.0.0.1:5432 answers.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k catalog`.
source "$(dirname "$0")/env.sh" dev
python -m pytest "$@"
