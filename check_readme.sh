#!/usr/bin/env bash
# Runs every shell command of README.md and of the docs/ pages it links (python, bash, pip and ./tasks.sh
# lines), as written and in order,
# in a fresh clone of this repository's last commit. With the experiments and the tasks that is hours on
# a 2-core CPU (README.md gives each command's time), so CI does not run it (tests/test_readme.py checks
# the same commands cheaply). Commands for a GPU (--device=cuda) are listed and skipped. Stops at the
# first command that fails; the clone is left in the folder it prints, for a look.
set -euo pipefail
repo="$(cd "$(dirname "$0")" && pwd)"
clone="$(mktemp -d)/clone"
git clone --quiet "$repo" "$clone"
cd "$clone"
echo "fresh clone of $(git log -1 --format='%h %s') in $clone"

mapfile -t commands < <(python tests/test_readme.py)
for command in "${commands[@]}"; do
    if [[ "$command" == *--device=cuda* ]]; then
        echo "=== skipped (needs a GPU): $command"
        continue
    fi
    echo "=== $command"
    start=$SECONDS
    bash -c "$command"
    echo "=== done in $((SECONDS - start)) s"
done
echo "every README command ran (the Python snippet needs the network and is not run)"
