#!/usr/bin/env bash
# actionlint, which checks .github/workflows (tests/test_workflows.py runs it): built from its Go
# module through the Go module proxy into the cache outside the repository, keyed by version,
# and linked into $BIN. Idempotent: later runs and other clones only link it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=v1.7.12
CACHE=${CLOUDSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudservice}
BUILT=$CACHE/actionlint-$VERSION/actionlint
BIN=$REPO/.cache/bin
export GOPROXY=${GOPROXY:-https://proxy.golang.org}

if [ ! -x "$BUILT" ]; then
    command -v go >/dev/null || { echo "setup-actionlint: needs Go (https://go.dev/dl/)" >&2; exit 1; }
    echo "setup-actionlint: building actionlint $VERSION from the Go module proxy" >&2
    GOBIN=$(dirname "$BUILT") go install "github.com/rhysd/actionlint/cmd/actionlint@$VERSION"
fi
mkdir -p "$BIN"
ln -f "$BUILT" "$BIN/actionlint" 2>/dev/null || cp "$BUILT" "$BIN/actionlint"
