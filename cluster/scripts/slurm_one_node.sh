#!/usr/bin/env bash
# A real one-node Slurm cluster (munged, slurmctld, slurmd) for tests, run as root, in ~10 s.
#
#   cluster/scripts/slurm_one_node.sh up DIR     # prints `export SLURM_CONF=DIR/etc/slurm.conf`
#   cluster/scripts/slurm_one_node.sh down DIR   # stops exactly the daemons `up` started
#
# Everything lives under DIR: its own munge key and socket (AuthInfo=socket=...), its own
# slurmctld/slurmd ports (free ones, picked at start), state, spool and logs, so it never
# touches /etc/slurm, /etc/munge or another Slurm on the machine. Daemons run in the
# foreground under setsid; their PIDs are in DIR/run/*.pid and `down` signals only those.
# Needs the Debian packages slurmctld, slurmd, slurm-client and munge
# (cluster/scripts/install_test_deps.sh installs them).
set -euo pipefail

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
D=$(realpath -m "$2")

stop_pid() {  # stop_pid FILE: TERM, wait up to 10 s, then KILL the PID recorded in FILE
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

free_port() {  # free_port START: first TCP port >= START nobody listens on
    local p=$1
    while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
    echo "$p"
}

if [ "$cmd" = down ]; then
    export SLURM_CONF=$D/etc/slurm.conf
    if [ -f "$SLURM_CONF" ] && [ -s "$D/run/slurmctld.pid" ]; then
        timeout 10 scancel --full --quiet --partition=debug >/dev/null 2>&1 || true
        sleep 1
    fi
    stop_pid "$D/run/slurmd.pid"
    stop_pid "$D/run/slurmctld.pid"
    stop_pid "$D/run/munged.pid"
    exit 0
fi
[ "$cmd" = up ] || usage

[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (slurmd must start jobs as any user)" >&2; exit 1; }
for b in munged mungekey slurmctld slurmd sbatch srun sinfo scontrol; do
    command -v "$b" >/dev/null 2>&1 || {
        echo "$0: $b not found; install with cluster/scripts/install_test_deps.sh" >&2; exit 1; }
done

H=$(hostname -s)
mkdir -p "$D/etc" "$D/state" "$D/spool" "$D/log" "$D/run"
chmod 0755 "$D"
# munge: its own key and socket; the socket's folder must be traversable by everybody.
install -d -o munge -g munge -m 0711 "$D/munge"
[ -s "$D/munge/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$D/munge/munge.key"
SOCK=$D/munge/munge.socket
setsid runuser -u munge -- munged -F --socket="$SOCK" --key-file="$D/munge/munge.key" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/munged.seed" \
    >"$D/log/munged.out" 2>&1 &
echo $! >"$D/run/munged.pid"
for _ in $(seq 50); do munge -n -S "$SOCK" >/dev/null 2>&1 && break; sleep 0.2; done
munge -n -S "$SOCK" >/dev/null || { echo "$0: munged did not start; see $D/log/munged.out" >&2; exit 1; }

CTLD_PORT=$(free_port "${SLURMCTLD_PORT:-26817}")
SLURMD_PORT=$(free_port $((CTLD_PORT + 1)))
MEM=$(awk '/MemAvailable/{print int($2/1024*0.9)}' /proc/meminfo)   # MB, a bit under free memory
cat >"$D/etc/slurm.conf" <<EOF
ClusterName=tunefactory-test
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.daemon.pid
SlurmdPidFile=$D/run/slurmd.daemon.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$D/etc/slurm.conf
setsid slurmctld -D -f "$SLURM_CONF" >"$D/log/slurmctld.out" 2>&1 &
echo $! >"$D/run/slurmctld.pid"
setsid slurmd -D -f "$SLURM_CONF" >"$D/log/slurmd.out" 2>&1 &
echo $! >"$D/run/slurmd.pid"
for _ in $(seq 120); do
    [ "$(sinfo -h -N -o %T 2>/dev/null | head -n 1)" = idle ] && break
    sleep 0.5
done
if [ "$(sinfo -h -N -o %T 2>/dev/null | head -n 1)" != idle ]; then
    echo "$0: the node did not become idle; see $D/log/slurmctld.log and $D/log/slurmd.log" >&2
    exit 1
fi
echo "export SLURM_CONF=$SLURM_CONF"
