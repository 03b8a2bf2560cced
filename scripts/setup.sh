#!/usr/bin/env bash
# One-shot set-up on a fresh Debian machine: system peers, .venv, npm assets.
# Idempotent; `make` reruns it only when its inputs change.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  tigervnc-standalone-server tigervnc-viewer tigervnc-tools   # real VNC server/viewer peers
  qemu-system-x86 seabios                                     # QEMU backend of the sim
  socat xvfb xterm x11-xserver-utils x11-apps xdotool         # seed chain, X tools for tests
  chromium                                                    # browser tests (Playwright)
  console-setup-linux                                         # 8x16 VGA console font for vncterm
  imagemagick                                                 # make bench: screen content
  nodejs npm                                                  # front-end assets (if missing)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  case "$p" in nodejs|npm) command -v "${p/nodejs/node}" >/dev/null 2>&1 && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'

if [ -f package.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
touch .venv/.setup-done
echo "setup: done"
