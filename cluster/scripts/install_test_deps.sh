#!/usr/bin/env bash
# Install the system packages the cluster tests need (Debian/Ubuntu, as root): Slurm
# (slurmctld, slurmd, client), munge and shellcheck. Idempotent: exits 0 quietly when
# everything is present. Call it from CI before `make test`; the tests never run apt.
set -euo pipefail
need=()
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
command -v munged >/dev/null 2>&1 || need+=(munge)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "install_test_deps.sh: missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install_test_deps.sh: installed ${need[*]}"
