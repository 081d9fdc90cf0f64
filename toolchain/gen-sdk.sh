#!/usr/bin/env bash
# Generate the provider's Python SDK from provider/schema.json into OUT/python (default: sdk/),
# as `make sdk` does and as tests/provider/test_sdk.py checks the committed one.
#
# Pulumi's codegen writes the placeholder version 0.0.0 into setup.py, for a release build to
# stamp, as Pulumi's own providers do; the SDK reports that version to the engine, which then
# looks for the plugin at it. So the schema's version is stamped here.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/sdk}
SCHEMA=$REPO/provider/schema.json
version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$SCHEMA")

rm -rf "$OUT/python"
"$REPO/.cache/bin/pulumi" package gen-sdk "$SCHEMA" --language python --version "$version" \
    -o "$OUT" >/dev/null
sed -i "s/^VERSION = \"0.0.0\"$/VERSION = \"$version\"/" "$OUT/python/setup.py"
grep -q "^VERSION = \"$version\"$" "$OUT/python/setup.py" || {
    echo "gen-sdk: could not stamp version $version into $OUT/python/setup.py" >&2
    exit 1
}
