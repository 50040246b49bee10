#!/usr/bin/env bash
# Checks the README's two commands the way a new user meets them: a fresh clone, no .venv, no GPU, no ROS
# install (only what `make setup` installs from PyPI). Usage: scripts/check_fresh_clone.sh [--demo-only]
# Needs CamVid beside the repository only for the tests that read real frames (they skip without it).
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/main"
if [ -d "$repo/../shared" ]; then ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"; fi
cd "$work/main"
command -v nvidia-smi >/dev/null && echo "note: a GPU is visible; the commands do not need one"
echo "== make demo (quick mode) in $work/main"
time make demo DEMO_ARGS="--quick --no-live --out $work/demo_out"
ls -l "$work/demo_out"
if [ "${1:-}" != "--demo-only" ]; then
  echo "== make test"
  time CI=true make test
fi
echo "fresh-clone check passed"
