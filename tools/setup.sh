#!/usr/bin/env bash
# Fresh Debian 12 machine, as root: install the packages, build and install
# pertscore, then run the main job on the bundled example screen and print the
# summary. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2046
apt-get install -y -q --no-install-recommends $(grep -v '^#' tools/debian-packages.txt)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
cmake --install build   # puts pertscore in /usr/local/bin, the Python module pertscore where
                        # /usr/bin/python3 imports it, R/read_pertscore.R in /usr/local/share/pertscore/R
(cd / && /usr/bin/python3 -c "import pertscore")

# Open MPI refuses to run as root unless told; a cluster user does not need this.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash examples/run-example.sh
