#!/bin/sh
# Fetch the console's third-party browser code from the npm registry into static/vendor/.
# Run by a maintainer when bumping a version; the output is committed, so nothing is
# downloaded when the package is built, installed or served (no CDN).
set -eu
UPLOT=1.6.32          # MIT licence (LICENSE copied alongside)
here=$(cd "$(dirname "$0")" && pwd)
out="$here/static/vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack "uplot@$UPLOT" --silent >/dev/null
tar xzf "uplot-$UPLOT.tgz"
mkdir -p "$out"
cp package/dist/uPlot.esm.js "$out/uPlot.esm.js"
cp package/dist/uPlot.min.css "$out/uPlot.min.css"
cp package/LICENSE "$out/uPlot.LICENSE"
echo "uPlot $UPLOT (MIT) from https://registry.npmjs.org/uplot/-/uplot-$UPLOT.tgz" > "$out/VERSIONS"
