#!/usr/bin/env bash
# Makes sure the programs the tests need are on PATH. A missing one is
# installed from Debian's packages when we are root or have passwordless
# sudo; otherwise the script stops at once with the exact command to run.
#
# Each argument is BINARY:DEBIAN_PACKAGE:BREW_PACKAGE.
set -euo pipefail

missing_bins=()
missing_debs=()
missing_brews=()
for spec in "$@"; do
  IFS=: read -r bin deb brew <<<"$spec"
  if ! command -v "$bin" >/dev/null 2>&1; then
    missing_bins+=("$bin")
    missing_debs+=("$deb")
    missing_brews+=("$brew")
  fi
done
[ ${#missing_bins[@]} -eq 0 ] && exit 0

echo "tests need: ${missing_bins[*]}" >&2
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing_debs[*]}" >&2
      exit 1
    fi
  fi
  echo "installing with apt-get: ${missing_debs[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing_debs[@]}" >&2
  exit 0
fi
if [ "$(uname)" = Darwin ]; then
  echo "install them with: brew install ${missing_brews[*]}" >&2
else
  echo "install the packages that provide: ${missing_bins[*]} (Debian: apt-get install -y ${missing_debs[*]}; macOS: brew install ${missing_brews[*]})" >&2
fi
exit 1
