#!/usr/bin/env bash
# Refresh the Swagger UI files that /docs serves itself (so the docs page works offline),
# from the swagger-ui-dist package on the npm registry.
set -euo pipefail
version="${1:-5.35.0}"
target="$(cd "$(dirname "$0")/.." && pwd)/app/static/vendor/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p "$target"
for file in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
  cp "$work/package/$file" "$target/$file"
done
echo "$version" > "$target/VERSION"
echo "Swagger UI $version copied to $target"
