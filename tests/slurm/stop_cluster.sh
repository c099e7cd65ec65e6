#!/usr/bin/env bash
# Stop the daemons that tests/slurm/setup_cluster.sh started, by their PID files only
# (a munged or SLURM that was running before is left alone), and remove the links it made in
# /etc/slurm. Safe to run twice.
set -uo pipefail

STATE=${EMBEDSEG_SLURM_DIR:-/tmp/embedseg-slurm}

stop_pid_file() {  # stop_pid_file FILE: TERM the process it names, wait up to 10 s for it to end
    local file=$1 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$file"
}

# slurmd first: it runs the jobs and reports to slurmctld; munged last, both need it.
stop_pid_file "$STATE/slurmd.pid"
stop_pid_file "$STATE/slurmctld.pid"
stop_pid_file "$STATE/munge/munged.pid"

for name in slurm.conf gres.conf; do
    [[ $(readlink "/etc/slurm/$name") == "$STATE/$name" ]] && rm -f "/etc/slurm/$name"
done
exit 0
