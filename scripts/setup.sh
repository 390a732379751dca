#!/usr/bin/env bash
# Set up audiosim in ./.venv (system libraries via apt when run as root), then run it.
#   bash scripts/setup.sh app [ARGS...]   set up, then launch the app (or the CLI with ARGS)
#   bash scripts/setup.sh test [PYTEST ARGS...]   set up with test extras, then run the test suite
#   AUDIOSIM_EXTRAS=stores bash scripts/setup.sh app   also install optional extras (stores = milvus,
#                                                       pgvector and annoy; or any of them, comma-separated)
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-app}"
shift || true

APT_PACKAGES=(python3-venv libportaudio2 libsndfile1 ffmpeg sox espeak-ng xvfb xauth
  libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libdbus-1-3 libfontconfig1)
# The tests also judge ranking on real recordings that Debian ships (rendered with fluidsynth/timidity).
[[ "$mode" == test ]] && APT_PACKAGES+=(fluidsynth timidity fluid-soundfont-gm musescore-general-soundfont-small
  timgm6mb-soundfont csound-soundfont freepats avldrums.lv2-soundfont sonic-pi-samples)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "setup: missing system packages; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    [[ "$mode" == test ]] && exit 1
  fi
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
extras="gui${AUDIOSIM_EXTRAS:+,$AUDIOSIM_EXTRAS}"
[[ "$mode" == test ]] && extras="$extras,test"  # the test extra includes every store backend
stamp=".venv/.audiosim-installed-$(sha1sum pyproject.toml | cut -c1-12)-$extras"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e ".[$extras]" >&2
  touch "$stamp"
fi

case "$mode" in
  app)
    exec .venv/bin/audiosim "$@"
    ;;
  test)
    export QT_QPA_PLATFORM=offscreen
    export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.venv/numba-cache}"
    .venv/bin/lint-imports >&2
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: bash scripts/setup.sh app|test [ARGS...]" >&2
    exit 2
    ;;
esac
