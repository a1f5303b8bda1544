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
# And beside it, kubeconfig files as operators have them: the last context behind a credential
# plugin that never answers (in a second file), a context whose server refuses connections, a
# file that does not exist.
if [ -n "${MESHTOP_SCREENSHOT_KUBECONFIG:-}" ]; then
  shots=$(mktemp -d)
  trap 'rm -rf "$shots"' EXIT
  python3 - "$MESHTOP_SCREENSHOT_KUBECONFIG" "$shots" <<'EOF'
import sys, yaml, copy, os
src, d = sys.argv[1], sys.argv[2]
k = yaml.safe_load(open(src))
last = k["contexts"][-1]
main = copy.deepcopy(k)
main["contexts"] = k["contexts"][:-1]
yaml.safe_dump(main, open(f"{d}/config", "w"))
plugin = f"{d}/sso-login"
open(plugin, "w").write("#!/bin/sh\necho 'waiting for a browser login' >&2\nexec sleep 3600\n")
os.chmod(plugin, 0o700)
cluster = next(c for c in k["clusters"] if c["name"] == last["context"]["cluster"])
sso = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
       "users": [{"name": "sso", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                   "command": plugin, "interactiveMode": "Never"}}}],
       "contexts": [{"name": last["name"], "context": {"cluster": cluster["name"], "user": "sso"}}]}
yaml.safe_dump(sso, open(f"{d}/sso.yaml", "w"))
dead = copy.deepcopy(k["clusters"][0])
dead["name"] = "staging"
dead["cluster"]["server"] = "https://127.0.0.1:1"
user = k["users"][0]
staging = {"apiVersion": "v1", "kind": "Config", "clusters": [dead], "users": [user],
           "contexts": [{"name": "staging", "context": {"cluster": "staging", "user": user["name"]}}]}
yaml.safe_dump(staging, open(f"{d}/staging.yaml", "w"))
EOF
  export MESHTOP_SCREENSHOT_PLUGIN_KUBECONFIG="$shots/config:$shots/sso.yaml:$shots/staging.yaml:$shots/removed.yaml"
fi
# With the federation topology running in its own state dir, a live federation screenshot too.
fed_state="${MESHTOP_TESTENV_STATE:-$HOME/.cache/meshtop-testenv/state}-federation"
if kc=$(MESHTOP_TESTENV_STATE="$fed_state" testenv/env 2>/dev/null | sed -n 's/^export KUBECONFIG=//p' | tail -1) && [ -n "$kc" ]; then
  export MESHTOP_SCREENSHOT_FEDERATION_KUBECONFIG="$kc"
fi
cargo run --quiet --example screenshots
