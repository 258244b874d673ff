#!/usr/bin/env bash
# Refresh the ReDoc bundle that /redoc serves itself (so that page works offline too), from
# the redoc package on the npm registry. 2.x is the line FastAPI's ReDoc page is written for
# (a classic <script> with <redoc spec-url>); 3.x is an ES module and reports telemetry.
set -euo pipefail
version="${1:-2.5.4}"
target="$(cd "$(dirname "$0")/.." && pwd)/app/static/vendor/redoc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "redoc@$version" >/dev/null && tar xzf redoc-*.tgz)
mkdir -p "$target"
# The bundle's own LICENSE.txt lists the licences of the libraries bundled into it.
for file in bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt LICENSE; do
  cp "$work/package/$file" "$target/$(basename "$file")"
done
echo "$version" > "$target/VERSION"
echo "ReDoc $version copied to $target"
