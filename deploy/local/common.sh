# deploy/local/common.sh - helpers shared by kafka.sh and prometheus.sh.
#
# Sourced, never run. The sourcing script sets SERVICE (the prefix of its
# messages: "kafka", "prometheus") before it sources this file.
# shellcheck shell=bash

: "${SERVICE:?set SERVICE before sourcing common.sh}"

log() { printf '%s: %s\n' "$SERVICE" "$*"; }
die() { printf '%s: error: %s\n' "$SERVICE" "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }

# Seconds since T0_MS (from now_ms) with one decimal: "6.4".
elapsed_s() {
  local ms=$(($(now_ms) - $1))
  printf '%s.%s' "$((ms / 1000))" "$(((ms % 1000) / 100))"
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() ( exec 3<>"/dev/tcp/127.0.0.1/$1" ) 2>/dev/null

# take_lock LOCK_FILE WAIT_S: serialise invocations of this script with a flock
# on fd 9, held until the script exits (children started with 9>&- drop it).
# LOCK_FILE is "$VAR_DIR/.NAME.lock", so ${1%/*} is exactly $VAR_DIR.
take_lock() {
  mkdir -p "${1%/*}"
  exec 9>"$1"
  flock -w "$2" 9 || die "another $SERVICE.sh is holding $1"
}

# pid_from_file PID_FILE CMDLINE_PATTERN: print the pid in PID_FILE if that
# process is alive and its command line contains CMDLINE_PATTERN (so a reused
# pid is not mistaken for ours); else return 1.
pid_from_file() {
  local pid
  [[ -f $1 ]] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
  printf '%s\n' "$pid"
}

# stop_process NAME PID TIMEOUT_S PID_FILE: SIGTERM, wait up to TIMEOUT_S s,
# then SIGKILL; returns once PID is gone and PID_FILE is removed.
stop_process() {
  local name=$1 pid=$2 timeout_s=$3 pid_file=$4 waited=0
  log "stopping $name (pid $pid) ..."
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= timeout_s * 10)); then
      log "still alive after ${timeout_s}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$pid_file"
  log "stopped"
}

# show_log LOG_FILE LINES [-f]: the last LINES lines of LOG_FILE, or follow it.
show_log() {
  local file=$1 lines=$2
  shift 2
  [[ -f $file ]] || die "no log yet at $file"
  if [[ ${1:-} == -f ]]; then
    exec tail -n 100 -F "$file"
  fi
  tail -n "$lines" "$file"
}

# delete_state DIR: remove a (stopped) service's data, config, logs and pid file.
delete_state() {
  log "deleting $1"
  rm -rf "$1"
}

# The calling script's header comment (line 2 up to `set -euo pipefail`).
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}
