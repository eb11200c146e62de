#!/usr/bin/env bash
# deploy/local/prometheus.sh - run the real Prometheus server (Debian package)
# on 127.0.0.1 without Docker or systemd.
#
# Usage:
#   deploy/local/prometheus.sh start [--config FILE] [--port PORT]
#                                      # install the package if needed, validate the
#                                      # config with promtool, start, wait for /-/ready
#   deploy/local/prometheus.sh stop    # SIGTERM, wait up to PROMETHEUS_STOP_TIMEOUT s, then SIGKILL
#   deploy/local/prometheus.sh status  # exit 0 + "running on 127.0.0.1:PORT", else exit 1
#   deploy/local/prometheus.sh reload  # re-read the config (POST /-/reload)
#   deploy/local/prometheus.sh restart [--config FILE] [--port PORT]
#   deploy/local/prometheus.sh logs [-f]
#   deploy/local/prometheus.sh reset   # stop + delete the TSDB, log and pid file
#   deploy/local/prometheus.sh install # only install the package (prometheus + promtool)
#
# Environment (defaults in brackets):
#   PROMETHEUS_PORT           listen port                        [9090]
#   PROMETHEUS_CONFIG         config file                        [deploy/prometheus/prometheus-local.yml]
#   PROMETHEUS_RETENTION      TSDB retention                     [7d]
#   PROMETHEUS_START_TIMEOUT  seconds to wait for /-/ready       [60]
#   PROMETHEUS_STOP_TIMEOUT   seconds to wait after SIGTERM      [30]
#   STREAMREC_VAR_DIR         runtime state; uses ./prometheus   [<repo root>/var]
#
# Layout:
#   $STREAMREC_VAR_DIR/prometheus/data/            TSDB (--storage.tsdb.path)
#   $STREAMREC_VAR_DIR/prometheus/prometheus.log   server log
#   $STREAMREC_VAR_DIR/prometheus/prometheus.pid   pid of the server
#
# The binary comes from Debian's `prometheus` package (which also ships promtool);
# the packaged service is never enabled or started: this script runs /usr/bin/prometheus.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

SERVICE=prometheus
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
PROMETHEUS_CONFIG=${PROMETHEUS_CONFIG:-$REPO_ROOT/deploy/prometheus/prometheus-local.yml}
PROMETHEUS_RETENTION=${PROMETHEUS_RETENTION:-7d}
PROMETHEUS_START_TIMEOUT=${PROMETHEUS_START_TIMEOUT:-60}
PROMETHEUS_STOP_TIMEOUT=${PROMETHEUS_STOP_TIMEOUT:-30}

VAR_DIR=${STREAMREC_VAR_DIR:-$REPO_ROOT/var}
STATE_DIR="$VAR_DIR/prometheus"
DATA_DIR="$STATE_DIR/data"
LOG_FILE="$STATE_DIR/prometheus.log"
PID_FILE="$STATE_DIR/prometheus.pid"
LOCK_FILE="$VAR_DIR/.prometheus.lock"

PROMETHEUS_BIN=/usr/bin/prometheus
PROMTOOL_BIN=/usr/bin/promtool

base_url() { printf 'http://127.0.0.1:%s' "$PROMETHEUS_PORT"; }

is_ready() { curl -fsS --max-time 2 -o /dev/null "$(base_url)/-/ready" 2>/dev/null; }

require_curl() {
  command -v curl >/dev/null 2>&1 || die "curl not found: install it (e.g. 'apt-get install -y curl')."
}

# --- install ----------------------------------------------------------------

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "installing Debian's prometheus package needs root: run 'apt-get install -y --no-install-recommends prometheus' as root."
  fi
}

install_prometheus() {
  if [[ -x $PROMETHEUS_BIN && -x $PROMTOOL_BIN ]]; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "prometheus is not installed and apt-get is missing: install Prometheus (with promtool) so that $PROMETHEUS_BIN exists."
  local t0 apt_log policy_created=0
  t0=$(now_ms)
  apt_log=$(mktemp /tmp/streamrec-prometheus-apt.XXXXXX)
  log "installing Debian package 'prometheus' (apt-get update + install, first run only) ..."
  # No service may be started by the package's maintainer scripts: if the
  # machine has no policy-rc.d yet, add one that denies starts for the install.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    policy_created=1
  fi
  local rc=0
  {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
  } >"$apt_log" 2>&1 || rc=$?
  if ((policy_created)); then
    as_root rm -f /usr/sbin/policy-rc.d
  fi
  if ((rc != 0)); then
    tail -n 20 "$apt_log" >&2 || true
    die "apt-get could not install prometheus (full output: $apt_log)"
  fi
  rm -f "$apt_log"
  [[ -x $PROMETHEUS_BIN ]] || die "package installed but $PROMETHEUS_BIN is missing"
  [[ -x $PROMTOOL_BIN ]] || die "package installed but $PROMTOOL_BIN is missing"
  log "installed $("$PROMETHEUS_BIN" --version 2>&1 | head -n 1) in $(( ($(now_ms) - t0) / 1000 )) s"
}

# --- process helpers ----------------------------------------------------------

# Pid from the pid file if that process is alive and really our server.
server_pid() { pid_from_file "$PID_FILE" "--storage.tsdb.path=$DATA_DIR"; }

with_lock() { take_lock "$LOCK_FILE" 120; }

parse_start_args() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      --config) [[ $# -ge 2 ]] || die "--config needs a file"; PROMETHEUS_CONFIG=$2; shift 2 ;;
      --config=*) PROMETHEUS_CONFIG=${1#*=}; shift ;;
      --port) [[ $# -ge 2 ]] || die "--port needs a number"; PROMETHEUS_PORT=$2; shift 2 ;;
      --port=*) PROMETHEUS_PORT=${1#*=}; shift ;;
      *) die "unknown option for start: $1 (expected --config FILE, --port PORT)" ;;
    esac
  done
  [[ $PROMETHEUS_PORT =~ ^[0-9]+$ ]] || die "port must be a number, got '$PROMETHEUS_PORT'"
}

# --- commands ---------------------------------------------------------------

cmd_start() {
  local t0 pid config
  t0=$(now_ms)
  require_curl
  with_lock
  if is_ready; then
    echo "prometheus already running on 127.0.0.1:$PROMETHEUS_PORT"
    return 0
  fi
  install_prometheus

  if pid=$(server_pid); then
    local running_port
    running_port=$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's/^--web.listen-address=.*:\([0-9]*\)$/\1/p')
    [[ $running_port == "$PROMETHEUS_PORT" ]] ||
      die "a server from $STATE_DIR (pid $pid) already runs on port ${running_port:-?}; stop it first or use another STREAMREC_VAR_DIR"
    log "server pid $pid is already starting; waiting for it"
  else
    [[ -f $PROMETHEUS_CONFIG ]] || die "config file not found: $PROMETHEUS_CONFIG (pass --config FILE)"
    config=$(cd "$(dirname "$PROMETHEUS_CONFIG")" && pwd)/$(basename "$PROMETHEUS_CONFIG")
    local check
    check=$("$PROMTOOL_BIN" check config "$config" 2>&1) ||
      die "invalid config $config:"$'\n'"$check"
    if port_open "$PROMETHEUS_PORT"; then
      die "127.0.0.1:$PROMETHEUS_PORT is in use by something that is not a ready Prometheus; free it or use --port / PROMETHEUS_PORT"
    fi
    mkdir -p "$DATA_DIR"
    rm -f "$PID_FILE"
    log "starting $("$PROMETHEUS_BIN" --version 2>&1 | head -n 1 | cut -d' ' -f1-3) on 127.0.0.1:$PROMETHEUS_PORT (config $config, data $DATA_DIR)"
    # cd: relative rule_files / file_sd paths in the config resolve like promtool's.
    (
      cd "$(dirname "$config")"
      exec setsid nohup "$PROMETHEUS_BIN" \
        --config.file="$config" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --storage.tsdb.path="$DATA_DIR" \
        --storage.tsdb.retention.time="$PROMETHEUS_RETENTION" \
        --web.enable-lifecycle \
        </dev/null >>"$LOG_FILE" 2>&1 9>&-
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
  fi

  local deadline=$((t0 + PROMETHEUS_START_TIMEOUT * 1000))
  until is_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 15 "$LOG_FILE" >&2 2>/dev/null || true
      die "prometheus exited during startup; see $LOG_FILE"
    fi
    if (($(now_ms) > deadline)); then
      die "prometheus (pid $pid) not ready on 127.0.0.1:$PROMETHEUS_PORT within ${PROMETHEUS_START_TIMEOUT}s (left running: 'prometheus.sh stop' ends it); see $LOG_FILE"
    fi
    sleep 0.2
  done
  log "ready on 127.0.0.1:$PROMETHEUS_PORT (pid $pid); startup took $(elapsed_s "$t0") s"
}

cmd_stop() {
  local pid
  with_lock
  if ! pid=$(server_pid); then
    rm -f "$PID_FILE"
    if is_ready; then
      echo "prometheus: a server answers on 127.0.0.1:$PROMETHEUS_PORT but was not started from $STATE_DIR; not stopping it"
    else
      echo "prometheus: not running"
    fi
    return 0
  fi
  stop_process server "$pid" "$PROMETHEUS_STOP_TIMEOUT" "$PID_FILE"
}

cmd_status() {
  local pid="" promtool="not installed"
  require_curl
  [[ -x $PROMTOOL_BIN ]] && promtool=$PROMTOOL_BIN
  pid=$(server_pid) || true
  if is_ready; then
    echo "running on 127.0.0.1:$PROMETHEUS_PORT (pid ${pid:-unknown: not started from $STATE_DIR})"
    echo "promtool: $promtool"
    return 0
  fi
  if [[ -n $pid ]]; then
    echo "not ready on 127.0.0.1:$PROMETHEUS_PORT, but pid $pid is alive (starting, or stuck: see $LOG_FILE)"
  else
    echo "not running (127.0.0.1:$PROMETHEUS_PORT)"
  fi
  echo "promtool: $promtool"
  return 1
}

cmd_reload() {
  local body code
  require_curl
  is_ready || die "not running on 127.0.0.1:$PROMETHEUS_PORT"
  body=$(mktemp)
  code=$(curl -sS --max-time 30 -o "$body" -w '%{http_code}' -X POST "$(base_url)/-/reload") || code=000
  if [[ $code != 200 ]]; then
    cat "$body" >&2
    rm -f "$body"
    die "reload failed (HTTP $code); the old config stays active; see $LOG_FILE"
  fi
  rm -f "$body"
  log "config reloaded"
}

cmd_logs() { show_log "$LOG_FILE" "${PROMETHEUS_LOG_LINES:-200}" "$@"; }

cmd_reset() {
  cmd_stop
  delete_state "$STATE_DIR"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    start) parse_start_args "$@"; cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reload) cmd_reload ;;
    restart) parse_start_args "$@"; cmd_stop; cmd_start ;;
    logs) cmd_logs "$@" ;;
    reset) cmd_reset ;;
    install) install_prometheus; echo "prometheus: $PROMETHEUS_BIN"; echo "promtool: $PROMTOOL_BIN" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
