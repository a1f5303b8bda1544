#!/usr/bin/env bash
# Regenerates screenshots/*.png from the real rendering path (ui::draw into ratatui's
# TestBackend, rasterised with DejaVu Sans Mono). Needs fonts-dejavu-core.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ]; then
  apt-get install -y fonts-dejavu-core
fi
# With the test environment running, a live screenshot too (screenshots/live.png).
if kc=$(testenv/env 2>/dev/null | sed -n 's/^export KUBECONFIG=//p' | tail -1) && [ -n "$kc" ]; then
  export MESHTOP_SCREENSHOT_KUBECONFIG="$kc"
fi
# With the federation topology running in its own state dir, a live federation screenshot too.
fed_state="${MESHTOP_TESTENV_STATE:-$HOME/.cache/meshtop-testenv/state}-federation"
if kc=$(MESHTOP_TESTENV_STATE="$fed_state" testenv/env 2>/dev/null | sed -n 's/^export KUBECONFIG=//p' | tail -1) && [ -n "$kc" ]; then
  export MESHTOP_SCREENSHOT_FEDERATION_KUBECONFIG="$kc"
fi
cargo run --quiet --example screenshots
