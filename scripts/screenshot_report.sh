#!/usr/bin/env bash
# Open a study report in headless Chromium and save a full-page screenshot, to check that it renders
# (every figure is an embedded PNG: a broken image would show as an empty box).
#
# Usage:  scripts/screenshot_report.sh RUN_DIR/report.html [OUT.png]
# Installs Debian's chromium with apt-get when no chromium/chrome binary is found (needs root or sudo).
set -euo pipefail
report="${1:?usage: $0 REPORT.html [OUT.png]}"
out="${2:-${report%.html}.png}"
[ -f "$report" ] || { echo "no such report: $report" >&2; exit 2; }
browser=""
for b in chromium chromium-browser google-chrome chrome; do
  if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [ -z "$browser" ]; then
  echo "chromium not found; installing it with apt-get" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  browser=chromium
fi
abs="$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"
# Headless Chromium captures the window only: size it to the page (figures ~700 px, table rows ~30 px).
images=$(grep -o '<img' "$report" | wc -l)
rows=$(grep -o '<tr' "$report" | wc -l)
height=$((1500 + 750 * images + 32 * rows))
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,"$height" \
  --screenshot="$out" "file://$abs" 2>/dev/null
echo "screenshot: $out"
