#!/usr/bin/env bash
# Set up vaelab on a fresh Debian machine (as root): system packages, a virtualenv in .venv, and the
# package with the pinned dependencies of constraints.txt. Safe to run again.
#   bash scripts/setup.sh            # runtime: vaelab + Fashion-MNIST
#   bash scripts/setup.sh --test     # + test dependencies, Chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
apt_pkgs="python3 python3-venv dataset-fashion-mnist"
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  apt_pkgs="$apt_pkgs chromium chromium-driver"
fi
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $apt_pkgs >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e ".${extras}"
echo "vaelab is installed in .venv (activate with: source .venv/bin/activate)"
