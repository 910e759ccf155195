#!/usr/bin/env bash
# `make demo`: the demo county through the real ingest path, then the server.
# Steps run in order; each is idempotent (an unchanged delivery is a no-op on re-ingest).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export CIM_HOME="${CIM_HOME:-$PWD/.cim}"

$BIN/cim db up
$BIN/cim layers validate
