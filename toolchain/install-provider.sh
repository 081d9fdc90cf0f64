#!/usr/bin/env bash
# Install this clone's provider as Pulumi's `cloudservice` resource plugin (idempotent), so that
# a program in any directory can use it through the generated SDK (sdk/python) with no path in
# its Pulumi.yaml: `pulumi plugin ls` lists it beside libvirt.
#
# The plugin is packaged as Pulumi expects a Python plugin: the provider's sources, a
# PulumiPlugin.yaml that asks for a virtualenv of its own, and a requirements.txt with the
# provider's pinned dependencies (from pyproject.toml), which `pulumi plugin install` installs
# into that virtualenv. It is re-installed when the provider's sources change. This repository's
# own programs keep running the provider from source (Pulumi.yaml names it by path).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CLOUDSERVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudservice}
PULUMI=$REPO/.cache/bin/pulumi
PYTHON=$REPO/.venv/bin/python
say() { echo "install-provider: $*" >&2; }

version=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' \
    "$REPO/provider/schema.json")
digest=$(cd "$REPO/provider" && find . -name '*.py' -o -name schema.json | LC_ALL=C sort \
    | xargs sha256sum | sha256sum | cut -c1-16)
stamp=$CACHE/provider-plugin/installed
if [ "$(cat "$stamp" 2>/dev/null)" = "$version $digest" ] \
    && "$PULUMI" plugin ls 2>/dev/null | grep -qE "^cloudservice +resource +$version "; then
    exit 0
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "$REPO/provider/cloudservice" "$REPO/provider/__main__.py" "$REPO/provider/schema.json" "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cat > "$stage/PulumiPlugin.yaml" <<'YAML'
runtime:
  name: python
  options:
    virtualenv: venv
YAML
# The provider's runtime dependencies, exactly as pinned; pulumi-libvirt is the programs' own.
"$PYTHON" - "$REPO/pyproject.toml" > "$stage/requirements.txt" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith("pulumi-libvirt")))
PY
mkdir -p "$CACHE/provider-plugin"
tarball=$CACHE/provider-plugin/pulumi-resource-cloudservice-v$version.tar.gz
tar -czf "$tarball" -C "$stage" .
say "installing the cloudservice plugin v$version (its virtualenv: pip, about 15 s)"
"$PULUMI" plugin rm resource cloudservice "$version" --yes >/dev/null 2>&1 || true
log=$CACHE/provider-plugin/install.log
if ! "$PULUMI" plugin install resource cloudservice "$version" --file "$tarball" >"$log" 2>&1; then
    cat "$log" >&2
    say "installing the plugin failed (output above, also in $log)"
    exit 1
fi
echo "$version $digest" > "$stamp"
say "cloudservice v$version installed: $("$PULUMI" plugin ls | grep -E '^cloudservice ' | head -1)"
