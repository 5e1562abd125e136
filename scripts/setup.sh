#!/usr/bin/env bash
# Set up vaelab on a fresh Debian machine (as root): system packages, a virtualenv in .venv, and the
# package with the pinned dependencies of constraints.txt. Safe to run again.
#   bash scripts/setup.sh            # runtime: vaelab + Fashion-MNIST
#   bash scripts/setup.sh --test     # + test dependencies, the molecules, cluster (Ray) and tracking (MLflow) extras, Chromium
#   bash scripts/setup.sh --molecules  # + the molecules extra (RDKit, SELFIES, fcd_torch, MOSES data)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
apt_pkgs="python3 python3-venv dataset-fashion-mnist"
molecules=0
case "${1:-}" in
  --test) extras="[test,molecules,cluster,tracking]"; molecules=1; apt_pkgs="$apt_pkgs chromium chromium-driver" ;;
  --molecules) extras="[molecules]"; molecules=1 ;;
esac
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $apt_pkgs >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e ".${extras}"
if [ "$molecules" = 1 ]; then
  # MOSES splits ship in molsets; its pomegranate==0.12 pin does not build on Python 3.11, hence --no-deps
  .venv/bin/pip install -q -c constraints.txt --no-deps molsets==0.3.1
fi
echo "vaelab is installed in .venv (activate with: source .venv/bin/activate)"
