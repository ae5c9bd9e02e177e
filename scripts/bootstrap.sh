#!/usr/bin/env bash
# Set up everything Huishang needs on a fresh Debian machine; safe to repeat.
#   bash scripts/bootstrap.sh          # server: Python venv + runtime packages
#   bash scripts/bootstrap.sh --test   # also what the test suite needs (Chromium, CJK fonts, ffmpeg)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# Debian packages: a CJK font for the wall's labels, ffmpeg as the benchmarks' anchor,
# Chromium for the browser tests, iproute2 for their loopback-only network namespace,
# GStreamer's RTSP server (run by Debian's own python3 through python3-gi) as the tests' camera.
debs=(fonts-noto-cjk)
if [ "$want_test" = 1 ]; then
  debs+=(chromium ffmpeg iproute2)
  debs+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base
         gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)
fi
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if [ "$want_test" = 1 ]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi
