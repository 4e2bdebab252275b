#!/usr/bin/env bash
# The README's main command (scripts/main.sh), run as a newcomer runs it: from a fresh copy
# of the tree (the files git tracks, as a clone would have them) in a temporary folder. Then
# checks what it must produce (tests/check_main_job.py). Exit status 0 only when both hold.
# Usage: tests/main_job.sh [--keep]   (--keep leaves the copy and prints where it is)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=0
[ "${1:-}" = "--keep" ] && keep=1
work="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-main-job.XXXXXX")"
[ "$keep" -eq 1 ] || trap 'rm -rf "$work"' EXIT
tree="$work/tapegrad"
mkdir -p "$tree"

git=(git -c safe.directory="$root" -C "$root")  # a tree owned by another user still counts
if [ -e "$root/.git" ]; then
  # Tracked files only: an untracked file the main job needs would be missing from a clone.
  "${git[@]}" rev-parse --is-inside-work-tree >/dev/null  # fails loudly, not by falling back
  ("${git[@]}" ls-files -z | while IFS= read -r -d '' f; do
     if [ -e "$root/$f" ]; then printf '%s\0' "$f"; fi
   done | tar --null -C "$root" -T - -cf -) | tar -xf - -C "$tree"
else
  (cd "$root" && tar --exclude='./build*' --exclude=./runs -cf - .) | tar -xf - -C "$tree"
fi

echo "main job: bash scripts/main.sh in a fresh copy of the tree ($tree)"
start=$SECONDS
if ! (cd "$tree" && bash scripts/main.sh) >"$work/main.log" 2>&1; then
  echo "main job: FAILED: scripts/main.sh exited non-zero; its last lines:" >&2
  tail -n 30 "$work/main.log" >&2
  exit 1
fi
echo "main job: scripts/main.sh exited 0 in $((SECONDS - start)) s"
if ! /usr/bin/python3 "$root/tests/check_main_job.py" "$tree"; then
  echo "main job: FAILED: its outputs are wrong (above); the run's last lines:" >&2
  tail -n 30 "$work/main.log" >&2
  exit 1
fi
[ "$keep" -eq 1 ] && echo "main job: kept $work"
exit 0
