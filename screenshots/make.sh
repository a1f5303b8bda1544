#!/usr/bin/env bash
# Regenerates screenshots/*.png from the real rendering path (ui::draw into ratatui's
# TestBackend, rasterised with DejaVu Sans Mono). Needs fonts-dejavu-core.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ]; then
  apt-get install -y fonts-dejavu-core
fi
cargo run --quiet --example screenshots
