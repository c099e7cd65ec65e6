#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (Debian/Ubuntu, root), for tests.
#
#   tests/slurm/setup_cluster.sh     # idempotent: reuses what already runs
#
# Everything the cluster writes (config, state, spool, logs, PID files) lives in
# $EMBEDSEG_SLURM_DIR (default /tmp/embedseg-slurm). /etc/slurm/{slurm,gres}.conf become links
# to its config: jobs run `srun`, and the Snakemake job step clears SLURM_CONF, so the config
# must be where every SLURM command looks by default. A machine with a SLURM config of its own
# is left alone (exit 77).
# The node is declared as a small GPU node (8 cores, 2 GPUs, 64 GB) whatever the machine has,
# so the jobs of profiles/slurm get exactly the requests they would get on a real cluster;
# without cgroups nothing enforces those numbers, and the "GPUs" are GRES counters only.
# Daemons started here get PID files in that directory; tests/slurm/stop_cluster.sh stops
# exactly those.
#
# Exit status: 0 = cluster up; 77 = cannot run here (not root, no apt-get, another SLURM
# config in /etc/slurm), reason on stderr; anything else = a real failure.
set -euo pipefail

STATE=${EMBEDSEG_SLURM_DIR:-/tmp/embedseg-slurm}
PACKAGES=(slurmctld slurmd slurm-client munge)
# The node as declared (SlurmdParameters=config_overrides: not what slurmd detects), see above.
NODE_CPUS=8
NODE_MEMORY_MB=64000
# squeue only sees finished jobs for MinJobAge seconds; the Snakemake plugin needs them
# visible for >= 3 x its first status wait or it falls back to sacct (no accounting here).
MIN_JOB_AGE=600

cannot_run() { echo "setup_cluster.sh: cannot start a SLURM cluster here: $*" >&2; exit 77; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 4))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    echo "setup_cluster.sh: timed out after ${seconds}s waiting for $what; logs in $STATE" >&2
    exit 1
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    ((${#missing[@]} == 0)) && return 0
    echo "setup_cluster.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$STATE/apt.log" 2>&1 || { cat "$STATE/apt.log" >&2; exit 1; }
}

start_munge() {
    # A munged that already answers (system service, earlier run) is used as it is.
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
    # munged writes its PID file as user munge, hence a munge-owned directory for it.
    mkdir -p /run/munge /var/lib/munge /var/log/munge "$STATE/munge"
    chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge "$STATE/munge"
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged --force --pid-file="$STATE/munge/munged.pid"
    wait_for 10 "munged" bash -c "munge -n | unmunge"
}

resolve_hostname() {
    local host=$1
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
}

write_config() {
    local host=$1
    cat >"$STATE/slurm.conf" <<EOF
# Written by tests/slurm/setup_cluster.sh: one node, localhost only, no cgroups, no accounting.
ClusterName=embedseg-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
GresTypes=gpu
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
NodeName=$host CPUs=$NODE_CPUS RealMemory=$NODE_MEMORY_MB Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # The two GPUs: SLURM wants a character device per GPU; /dev/null and /dev/zero stand in
    # (nothing opens them without cgroups), so --gpus/--gres schedule on a CPU machine.
    printf 'NodeName=%s Name=gpu File=%s\n' "$host" /dev/null "$host" /dev/zero >"$STATE/gres.conf"
}

link_config() {
    local name
    mkdir -p /etc/slurm
    for name in slurm.conf gres.conf; do
        if [[ -e /etc/slurm/$name && $(readlink "/etc/slurm/$name") != "$STATE/$name" ]]; then
            cannot_run "/etc/slurm/$name exists and is not this script's; this machine has a SLURM setup"
        fi
        ln -sfn "$STATE/$name" "/etc/slurm/$name"
    done
}

start_slurm() {
    local host=$1
    if ! pid_alive "$STATE/slurmctld.pid"; then
        # -c forgets the jobs of an earlier cluster, whose ids the new one hands out again:
        # a fresh log keeps their lines from being taken for the new jobs'.
        rm -f "$STATE/slurmctld.log"
        slurmctld -c -i
    fi
    wait_for 30 "slurmctld (scontrol ping)" bash -c "scontrol ping | grep -q UP"
    pid_alive "$STATE/slurmd.pid" || slurmd
    wait_for 30 "node $host to register" bash -c "sinfo -h -n $host -o %t | grep -qv -e '^$' -e unk"
    if ! sinfo -h -n "$host" -o %t | grep -qE '^(idle|mix|alloc)'; then
        scontrol update NodeName="$host" State=RESUME
    fi
    wait_for 30 "node $host to become idle" bash -c "sinfo -h -n $host -o %t | grep -qE '^(idle|mix|alloc)'"
}

main() {
    [[ $(id -u) == 0 ]] || cannot_run "needs root (installs packages, starts munged/slurmctld/slurmd)"
    command -v apt-get >/dev/null || cannot_run "needs apt-get (Debian/Ubuntu) to install SLURM"
    mkdir -p "$STATE/state" "$STATE/spool"
    install_packages
    local host
    host=$(hostname -s)
    resolve_hostname "$host"
    start_munge
    link_config
    write_config "$host"
    start_slurm "$host"
    echo "setup_cluster.sh: SLURM cluster up (config, logs: $STATE)" >&2
}

main "$@"
