#!/usr/bin/env bash
# Give the pinned Pulumi CLI in $BIN the plugins this project's programs need (idempotent; run
# after setup-pulumi.sh, which puts the CLI there):
#
#   pulumi-language-python   runs Python programs and our provider plugin (provider/)
#   pulumi-language-yaml     runs YAML programs (examples/)
#   pulumi-resource-libvirt  pulumi-libvirt's provider; the engine asks for it because the
#                            pulumi-libvirt SDK is in the virtualenv, and cannot download it here
#
# No registry reachable from our machines serves the first and the last, so they are built from
# the exact upstream sources in ../shared/third_party (beside the repository) against the Go
# module proxy. pulumi-language-yaml is an ordinary Go module. Builds go to the cache outside the
# repository ($CLOUDSERVICE_CACHE, as for the CLI), keyed by version, so later runs and other
# clones only link them. Without the snapshots (a machine with internet access) the ordinary
# route is taken: the language host that ships with a Pulumi release, `pulumi plugin install`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${PULUMI_VERSION:?set PULUMI_VERSION (the Makefile does)}
LIBVIRT_VERSION=${PULUMI_LIBVIRT_VERSION:?set PULUMI_LIBVIRT_VERSION (the Makefile does)}
YAML_VERSION=1.25.0
THIRD_PARTY=$(cd "$REPO/.." && pwd)/shared/third_party
CACHE=${CLOUDSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudservice}
BIN=$REPO/.cache/bin
LIBEXEC=$REPO/.cache/libexec
export GOPROXY=${GOPROXY:-https://proxy.golang.org}

say() { echo "setup-plugins: $*" >&2; }
[ -x "$BIN/pulumi" ] || { say "no CLI in $BIN: run toolchain/setup-pulumi.sh first"; exit 1; }

# The CLI prefers plugins on PATH and warns ("using ... from \$PATH") unless they are also the
# ones next to its own binary, so they go into $BIN, beside it. A hard link where it can (a copy
# across filesystems), as for the CLI.
put() {
    rm -f "$2"
    ln "$1" "$2" 2>/dev/null || cp "$1" "$2"
}

# The directory of a Pulumi release on PATH, if any ($BIN's own copy of the CLI does not count).
release_dir() {
    local path_without_bin cli
    path_without_bin=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$BIN" | paste -sd: -)
    cli=$(PATH=$path_without_bin command -v pulumi 2>/dev/null) || return 1
    dirname "$(readlink -f "$cli")"
}

# build NAME OUT COMMAND ARGS...: run COMMAND ARGS... OUT.tmp and time it, since a cold build
# takes minutes on our 2-core machines. OUT is renamed into place only when complete, so a
# half-built binary is never taken for a cached one.
build() {
    local name=$1 out=$2 start
    shift 2
    command -v go >/dev/null || { say "Go is needed to build $name offline, and 'go' is not on PATH"; exit 1; }
    say "building $name (cold: minutes)"
    start=$(date +%s)
    mkdir -p "$(dirname "$out")"
    "$@" "$out.tmp"
    mv "$out.tmp" "$out"
    say "built $out in $(( $(date +%s) - start )) s"
}

# go_build DIR PACKAGE MOD LDFLAGS OUT: a package of the module staged in DIR (-mod=MOD),
# stripped, with this machine's paths trimmed and the version stamped as upstream's releases are.
go_build() {
    (cd "$1" && go build -mod="$3" -trimpath -ldflags "-s -w $4" -o "$5" "$2")
}

# go_install MODULE@VERSION LDFLAGS OUT: `go install` builds a released module by its own
# go.mod (this one has no replace directives), into a scratch GOBIN.
go_install() {
    local gobin
    gobin=$(mktemp -d)
    GOBIN=$gobin go install -trimpath -ldflags "-s -w $2" "$1"
    mv "$gobin/$(basename "${1%@*}")" "$3"
    rmdir "$gobin"
}

# A scratch directory in the cache, for sources staged beside a go.mod of ours (the snapshots
# are read-only, and builds must not write into them).
stage() {
    mkdir -p "$CACHE/build"
    mktemp -d "$CACHE/build/$1.XXXXXX"
}

# --- pulumi-language-python -------------------------------------------------------------------
# The host goes to $LIBEXEC with its program launcher, pulumi-language-python-exec, which it
# looks for beside its own path; the CLI starts it through a shim in $BIN
# (toolchain/python-host-legacy-flags.sh says why).
python_src=$THIRD_PARTY/pulumi-language-python-$VERSION
python_host=$CACHE/pulumi-language-python-v$VERSION/bin/pulumi-language-python
python_exec=$(dirname "$python_host")/pulumi-language-python-exec
if [ -d "$python_src" ]; then
    if [ ! -x "$python_host" ] || [ ! -f "$python_exec" ]; then
        dir=$(stage pulumi-language-python)
        cp "$REPO/toolchain/language-python/go.mod" "$REPO/toolchain/language-python/go.sum" \
            "$python_src/main.go" "$dir/"
        build "pulumi-language-python v$VERSION from $python_src" "$python_host" \
            go_build "$dir" . readonly "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION"
        rm -rf "$dir"
        # Its program launcher: a Python script in the SDK's Go module at the same version.
        sdk_dir=$(cd "$REPO/toolchain/language-python" &&
            go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$VERSION" |
            sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
        install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$python_exec"
    fi
    origin="built from $python_src"
elif release=$(release_dir) && [ -x "$release/pulumi-language-python" ]; then
    python_host=$release/pulumi-language-python
    python_exec=$release/pulumi-language-python-exec
    origin="no source snapshot at $python_src: the one of the Pulumi release in $release"
else
    say "no Python language host: neither the source snapshot $python_src nor a Pulumi release"
    say "on PATH (which ships one). Install the Pulumi CLI v$VERSION, or put shared/ beside the repository."
    exit 1
fi
mkdir -p "$LIBEXEC"
put "$python_host" "$LIBEXEC/pulumi-language-python"
install -m 0755 "$python_exec" "$LIBEXEC/pulumi-language-python-exec"
install -m 0755 "$REPO/toolchain/python-host-legacy-flags.sh" "$BIN/pulumi-language-python"
rm -f "$BIN/pulumi-language-python-exec"  # where earlier setups put it
say "pulumi-language-python v$VERSION ($origin) ready in $BIN"

# --- pulumi-language-yaml ---------------------------------------------------------------------
yaml_host=$CACHE/pulumi-language-yaml-v$YAML_VERSION/bin/pulumi-language-yaml
if [ ! -x "$yaml_host" ]; then
    build "pulumi-language-yaml v$YAML_VERSION from the Go module proxy" "$yaml_host" \
        go_install "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@v$YAML_VERSION" \
        "-X github.com/pulumi/pulumi-yaml/pkg/version.Version=v$YAML_VERSION"
fi
put "$yaml_host" "$BIN/pulumi-language-yaml"
say "pulumi-language-yaml v$YAML_VERSION ready in $BIN"

# --- pulumi-resource-libvirt ------------------------------------------------------------------
if "$BIN/pulumi" plugin ls 2>/dev/null |
        awk -v v="$LIBVIRT_VERSION" '$1 == "libvirt" && $2 == "resource" && $3 == v { found = 1 } END { exit !found }'; then
    say "pulumi-resource-libvirt v$LIBVIRT_VERSION already installed"
    exit 0
fi
libvirt_src=$THIRD_PARTY/pulumi-libvirt-$LIBVIRT_VERSION
libvirt_plugin=$CACHE/pulumi-resource-libvirt-v$LIBVIRT_VERSION/bin/pulumi-resource-libvirt
if [ -d "$libvirt_src" ]; then
    if [ ! -x "$libvirt_plugin" ]; then
        dir=$(stage pulumi-resource-libvirt)
        cp -r "$libvirt_src/provider/." "$dir/"
        chmod -R u+w "$dir"
        # What upstream's generate.go does before a build: the schema, stamped with the version,
        # is embedded in the binary (main.go's go:embed of schema-embed.json).
        python3 - "$dir/cmd/pulumi-resource-libvirt" "$LIBVIRT_VERSION" <<'PY'
import json, sys
folder, version = sys.argv[1:]
with open(f"{folder}/schema.json") as f:
    schema = json.load(f)
schema["version"] = version
with open(f"{folder}/schema-embed.json", "w") as f:
    json.dump(schema, f, separators=(",", ":"))
PY
        # -mod=mod, as the snapshot's notes say it was built (its go.sum also suffices for readonly).
        build "pulumi-resource-libvirt v$LIBVIRT_VERSION from $libvirt_src" "$libvirt_plugin" \
            go_build "$dir" ./cmd/pulumi-resource-libvirt mod \
            "-X github.com/pulumi/pulumi-libvirt/provider/pkg/version.Version=$LIBVIRT_VERSION"
        rm -rf "$dir"
    fi
    "$BIN/pulumi" plugin install resource libvirt "$LIBVIRT_VERSION" --file "$libvirt_plugin"
    say "pulumi-resource-libvirt v$LIBVIRT_VERSION (built from $libvirt_src) installed"
else
    say "no source snapshot at $libvirt_src: installing pulumi-resource-libvirt v$LIBVIRT_VERSION from Pulumi's servers"
    "$BIN/pulumi" plugin install resource libvirt "$LIBVIRT_VERSION"
fi
