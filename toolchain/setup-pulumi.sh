#!/usr/bin/env bash
# Make the pinned Pulumi CLI available in $BIN (idempotent); its plugins are
# toolchain/setup-plugins.sh's job.
#
# 1. `pulumi` on PATH at the pinned version is used as it is.
# 2. Else the CLI is built from the Go module proxy into a cache outside the repository
#    ($CLOUDSERVICE_CACHE, default ~/.cache/cloudservice) that later runs and other clones reuse.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${PULUMI_VERSION:?set PULUMI_VERSION (the Makefile does)}
CACHE=${CLOUDSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudservice}
BIN=$REPO/.cache/bin
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
export GOFLAGS=-mod=mod

mkdir -p "$BIN"
say() { echo "setup-pulumi: $*" >&2; }

cli_version() { "$1" version 2>/dev/null | tr -d 'v\r'; }

# Our own copy in $BIN (first on the Makefile's PATH) does not count: once there, it would hide a
# release on PATH and send later runs to the build.
path_without_bin=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$BIN" | paste -sd: -)
ambient=$(PATH=$path_without_bin command -v pulumi 2>/dev/null || true)
if [ -n "$ambient" ] && [ "$(cli_version "$ambient")" = "$VERSION" ]; then
    cli=$ambient
    say "using $cli (v$VERSION) from PATH"
else
    cli=$CACHE/pulumi-v$VERSION/bin/pulumi
    if [ ! -x "$cli" ] || [ "$(cli_version "$cli")" != "$VERSION" ]; then
        command -v go >/dev/null || { say "Go is needed to build the Pulumi CLI offline, and 'go' is not on PATH"; exit 1; }
        say "building the Pulumi CLI v$VERSION from the Go module proxy (cold: several minutes)"
        start=$(date +%s)
        mkdir -p "$(dirname "$cli")"
        (cd "$REPO/toolchain/go" && go build -trimpath \
            -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION" \
            -o "$cli.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
        mv "$cli.tmp" "$cli"
        say "built $cli in $(( $(date +%s) - start )) s"
    else
        say "using cached $cli"
    fi
fi
# A hard link (a copy across filesystems), not a symlink: the CLI looks for its language hosts
# next to its own resolved path, and there it takes them without an "ambient plugin" warning.
rm -f "$BIN/pulumi"
ln "$cli" "$BIN/pulumi" 2>/dev/null || cp "$cli" "$BIN/pulumi"
say "pulumi v$("$BIN/pulumi" version | tr -d v) ready in $BIN"
