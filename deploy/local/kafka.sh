#!/usr/bin/env bash
# deploy/local/kafka.sh - run a real, single-node Apache Kafka broker (KRaft,
# combined broker+controller) on 127.0.0.1 without Docker.
#
# Usage:
#   deploy/local/kafka.sh start     # resolve jars (first time only), format storage
#                                   # (first time only), start, wait until ready
#   deploy/local/kafka.sh stop      # SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL
#   deploy/local/kafka.sh status    # exit 0 + "running on 127.0.0.1:PORT", else exit 1
#   deploy/local/kafka.sh restart
#   deploy/local/kafka.sh logs [-f] # last lines of the broker log (-f: follow)
#   deploy/local/kafka.sh reset     # stop + delete the broker's data/config/logs
#   deploy/local/kafka.sh fetch     # only resolve the jars into the cache
#
# Environment (defaults in brackets):
#   KAFKA_PORT             client listener port                [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port      [KAFKA_PORT+1]
#   KAFKA_HEAP_OPTS        broker JVM heap                     [-Xmx512m -Xms256m]
#   KAFKA_LOG_LEVEL        root log level of server.log        [INFO]
#   KAFKA_START_TIMEOUT    seconds to wait for readiness       [90]
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM       [30]
#   KAFKA_VERSION          Kafka version to run                [kafka.version in pom.xml]
#   STREAMREC_VAR_DIR      runtime state; broker uses ./kafka  [<repo root>/var]
#   STREAMREC_CACHE_DIR    jar cache                           [$HOME/.cache/streamrec]
#   JAVA_HOME              JDK to use (else java/javac on PATH)
#
# Layout:
#   $STREAMREC_CACHE_DIR/kafka-<version>/libs/     broker jars (resolved once by mvn)
#   $STREAMREC_CACHE_DIR/kafka-<version>/probe/    compiled readiness probe
#   $STREAMREC_VAR_DIR/kafka/data/                 KRaft metadata + topic data
#   $STREAMREC_VAR_DIR/kafka/logs/server.log       broker log (kafka.out: JVM stdout/stderr)
#   $STREAMREC_VAR_DIR/kafka/kafka.pid             pid of the broker JVM
#
# Requires: Java 17+ (JDK: java and javac) and Maven (mvn) on PATH.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
POM="$SCRIPT_DIR/pom.xml"

SERVICE=kafka
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
KAFKA_LOG_LEVEL=${KAFKA_LOG_LEVEL:-INFO}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
if [[ -z ${KAFKA_VERSION:-} ]]; then
  KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)
fi
[[ -n $KAFKA_VERSION ]] || { echo "kafka.sh: cannot read kafka.version from $POM" >&2; exit 1; }

VAR_DIR=${STREAMREC_VAR_DIR:-$REPO_ROOT/var}
CACHE_DIR=${STREAMREC_CACHE_DIR:-${HOME:-/root}/.cache/streamrec}
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIBS_DIR="$KAFKA_HOME/libs"
LIBS_MARKER="$KAFKA_HOME/.libs-resolved"
PROBE_DIR="$KAFKA_HOME/probe"

STATE_DIR="$VAR_DIR/kafka"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
LOG_FILE="$LOG_DIR/server.log"
OUT_FILE="$LOG_DIR/kafka.out"
PID_FILE="$STATE_DIR/kafka.pid"
CONFIG_FILE="$STATE_DIR/server.properties"
LOG4J_FILE="$STATE_DIR/log4j2.properties"
LOCK_FILE="$VAR_DIR/.kafka.lock"

if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
  JAVA="$JAVA_HOME/bin/java"
  JAVAC="$JAVA_HOME/bin/javac"
else
  JAVA=java
  JAVAC=javac
fi

require_tools() {
  command -v "$JAVA" >/dev/null 2>&1 ||
    die "java not found: install a Java 17+ JDK (e.g. 'apt-get install -y openjdk-17-jdk-headless') or set JAVA_HOME."
  command -v "$JAVAC" >/dev/null 2>&1 ||
    die "javac not found (a JRE is not enough): install a Java 17+ JDK (e.g. 'apt-get install -y openjdk-17-jdk-headless') or set JAVA_HOME."
  local major
  major=$("$JAVA" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p')
  [[ ${major:-0} -ge 17 ]] ||
    die "Kafka $KAFKA_VERSION needs Java 17 or newer, but '$JAVA' is Java ${major:-unknown}: install openjdk-17-jdk-headless or set JAVA_HOME."
}

require_mvn() {
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: install Apache Maven (e.g. 'apt-get install -y maven'); it is needed once to download the Kafka jars."
}

# --- jars -------------------------------------------------------------------

# Resolve the broker jars into $LIBS_DIR once. The marker holds a checksum of
# pom.xml, so editing the pom (e.g. a log4j bump) re-resolves automatically.
fetch_libs() {
  local want
  want="$KAFKA_VERSION $(sha256sum "$POM" | cut -d' ' -f1)"
  if [[ -f $LIBS_MARKER && $(cat "$LIBS_MARKER") == "$want" && -d $LIBS_DIR ]]; then
    return 0
  fi
  require_mvn
  mkdir -p "$KAFKA_HOME"
  local tmp="$KAFKA_HOME/libs.tmp.$$" mvn_log="$KAFKA_HOME/mvn.log" t0
  t0=$(now_ms)
  log "resolving Apache Kafka $KAFKA_VERSION jars with Maven into $LIBS_DIR (first run only) ..."
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" \
      -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$mvn_log" >&2 || true
    die "mvn could not resolve Kafka $KAFKA_VERSION (full output: $mvn_log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn finished but no kafka_2.13 jar in $tmp (see $mvn_log)"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  printf '%s\n' "$want" >"$LIBS_MARKER"
  log "resolved $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $(( ($(now_ms) - t0) / 1000 )) s"
}

# Readiness probe: an AdminClient that waits until the broker answers metadata
# requests AND the group coordinator serves offset fetches (this creates and
# loads __consumer_offsets, so consumer groups can join right after `start`).
# Compiled once per Kafka version; recompiled if this source changes.
PROBE_SRC='import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class StreamrecKafkaProbe {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        long timeoutMs = Long.parseLong(args[1]);
        long deadline = System.currentTimeMillis() + timeoutMs;
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "streamrec-readiness-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, "50");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, "50");
        props.put(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, "200");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, String.valueOf(Math.max(timeoutMs, 1000)));
        Throwable last = null;
        try (Admin admin = Admin.create(props)) {
            while (System.currentTimeMillis() < deadline) {
                try {
                    admin.describeCluster().nodes().get();
                    admin.listConsumerGroupOffsets("streamrec-readiness-probe")
                         .partitionsToOffsetAndMetadata().get();
                    System.out.println("ready");
                    return;
                } catch (Exception e) {
                    last = e.getCause() != null ? e.getCause() : e;
                    Thread.sleep(200);
                }
            }
        }
        System.err.println("broker not ready: " + last);
        System.exit(1);
    }
}
'

build_probe() {
  local src="$PROBE_DIR/StreamrecKafkaProbe.java"
  if [[ -f $PROBE_DIR/StreamrecKafkaProbe.class && -f $src ]] &&
     [[ $(cat "$src") == "$PROBE_SRC" ]]; then
    return 0
  fi
  mkdir -p "$PROBE_DIR"
  printf '%s' "$PROBE_SRC" >"$src"
  "$JAVAC" -nowarn -cp "$LIBS_DIR/*" -d "$PROBE_DIR" "$src" ||
    die "could not compile the readiness probe ($src)"
}

# --- process / protocol checks ---------------------------------------------

# True if a Kafka broker answers an ApiVersions request (v0) on the port.
# Pure bash (no JVM start), so `status` and the idempotent `start` are fast.
kafka_answers() (
  local hex
  exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT" || exit 1
  # size=15 | api_key=18 (ApiVersions) | version=0 | correlation_id=42 | client_id="probe"
  printf '\000\000\000\017\000\022\000\000\000\000\000\052\000\005probe' >&3
  hex=$(timeout 5 head -c 10 <&3 | od -An -tx1 | tr -d ' \n') || exit 1
  # reply: size(4) | correlation_id(4) == 42 | error_code(2) == 0
  [[ $hex == ????????0000002a0000 ]]
) 2>/dev/null

# Pid from the pid file if that process is alive and really our broker.
broker_pid() { pid_from_file "$PID_FILE" "kafka.Kafka $CONFIG_FILE"; }

with_lock() { take_lock "$LOCK_FILE" 180; }

# --- config -----------------------------------------------------------------

write_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  cat >"$CONFIG_FILE" <<EOF
# Generated by deploy/local/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# Single node: every internal topic has exactly one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

# Dev/test friendliness.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.partitions=1
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=268435456
EOF

  cat >"$LOG4J_FILE" <<EOF
# Generated by deploy/local/kafka.sh (log4j2, used through slf4j).
status = warn
name = streamrec-kafka
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = $LOG_FILE
appender.server.filePattern = $LOG_FILE.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = $KAFKA_LOG_LEVEL
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
}

# Format the KRaft log dir once; an existing meta.properties means "keep data".
format_storage() {
  [[ -f $DATA_DIR/meta.properties ]] && return 0
  local cluster_id
  # Kafka cluster ids are 16 random bytes, URL-safe base64 without padding.
  cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  while [[ $cluster_id == -* ]]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  log "formatting KRaft storage in $DATA_DIR (cluster id $cluster_id)"
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$LOG4J_FILE" -cp "$LIBS_DIR/*" \
    kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$CONFIG_FILE" \
    >>"$OUT_FILE" 2>&1 || die "kafka-storage format failed; see $OUT_FILE and $LOG_FILE"
}

# --- commands ---------------------------------------------------------------

cmd_status() {
  local pid=""
  pid=$(broker_pid) || true
  if kafka_answers; then
    if [[ -n $pid ]]; then
      echo "running on 127.0.0.1:$KAFKA_PORT (pid $pid)"
    else
      echo "running on 127.0.0.1:$KAFKA_PORT (not started by this script's var dir $STATE_DIR)"
    fi
    return 0
  fi
  if [[ -n $pid ]]; then
    echo "not answering on 127.0.0.1:$KAFKA_PORT, but broker pid $pid is alive (starting, or stuck: see $LOG_FILE)"
  elif port_open "$KAFKA_PORT"; then
    echo "not running: 127.0.0.1:$KAFKA_PORT is held by something that does not speak Kafka"
  else
    echo "not running (127.0.0.1:$KAFKA_PORT)"
  fi
  return 1
}

# Wait until the broker serves metadata AND consumer-group requests. The probe
# JVM is launched right away (in parallel with the broker's own startup) and
# retries internally; meanwhile we watch for the broker dying or the deadline.
wait_ready() {
  local pid=$1 t0=$2 deadline remaining probe_pid probe_rc=0 probe_err="$LOG_DIR/probe.err"
  deadline=$((t0 + KAFKA_START_TIMEOUT * 1000))
  remaining=$((deadline - $(now_ms)))
  ((remaining > 5000)) || remaining=5000
  "$JAVA" -Xmx64m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dlog4j2.level=OFF \
    -cp "$PROBE_DIR:$LIBS_DIR/*" StreamrecKafkaProbe "127.0.0.1:$KAFKA_PORT" "$remaining" \
    </dev/null >/dev/null 2>"$probe_err" 9>&- &
  probe_pid=$!
  while kill -0 "$probe_pid" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      kill "$probe_pid" 2>/dev/null || true
      tail -n 20 "$OUT_FILE" >&2 2>/dev/null || true
      die "broker exited during startup; see $LOG_FILE and $OUT_FILE"
    fi
    if (($(now_ms) > deadline + 5000)); then
      kill "$probe_pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$probe_pid" || probe_rc=$?
  if ((probe_rc != 0)); then
    if kafka_answers; then
      die "broker (pid $pid) answers but its group coordinator was not ready within ${KAFKA_START_TIMEOUT}s ($(tail -n 1 "$probe_err" 2>/dev/null)); see $LOG_FILE"
    fi
    die "broker (pid $pid) did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (left running: 'kafka.sh stop' ends it); see $LOG_FILE"
  fi
  rm -f "$probe_err"
}

cmd_start() {
  local t0 pid
  t0=$(now_ms)
  with_lock
  if kafka_answers; then
    echo "kafka already running on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  require_tools
  fetch_libs
  build_probe

  if pid=$(broker_pid); then
    local running_port
    running_port=$(sed -n 's|^listeners=PLAINTEXT://[^:]*:\([0-9]*\),.*|\1|p' "$CONFIG_FILE" 2>/dev/null)
    [[ $running_port == "$KAFKA_PORT" ]] ||
      die "a broker from $STATE_DIR (pid $pid) already runs on port ${running_port:-?}; stop it first or use another STREAMREC_VAR_DIR"
    log "broker pid $pid is already starting; waiting for it"
  else
    if port_open "$KAFKA_PORT"; then
      die "127.0.0.1:$KAFKA_PORT is in use by something that is not a Kafka broker; free it or set KAFKA_PORT"
    fi
    if port_open "$KAFKA_CONTROLLER_PORT"; then
      die "controller port 127.0.0.1:$KAFKA_CONTROLLER_PORT is in use; free it or set KAFKA_CONTROLLER_PORT"
    fi
    rm -f "$PID_FILE"
    write_config
    format_storage
    log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, data $DATA_DIR)"
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
    setsid nohup "$JAVA" $KAFKA_HEAP_OPTS \
      -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$LOG4J_FILE" \
      -cp "$LIBS_DIR/*" kafka.Kafka "$CONFIG_FILE" \
      </dev/null >>"$OUT_FILE" 2>&1 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
  fi
  wait_ready "$pid" "$t0"
  log "ready on 127.0.0.1:$KAFKA_PORT (pid $pid); startup took $(elapsed_s "$t0") s"
}

cmd_stop() {
  local pid
  with_lock
  if ! pid=$(broker_pid); then
    rm -f "$PID_FILE"
    if kafka_answers; then
      echo "kafka: a broker answers on 127.0.0.1:$KAFKA_PORT but was not started from $STATE_DIR; not stopping it"
    else
      echo "kafka: not running"
    fi
    return 0
  fi
  stop_process broker "$pid" "$KAFKA_STOP_TIMEOUT" "$PID_FILE"
}

cmd_logs() { show_log "$LOG_FILE" "${KAFKA_LOG_LINES:-200}" "$@"; }

cmd_reset() {
  cmd_stop
  delete_state "$STATE_DIR"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    logs) cmd_logs "$@" ;;
    reset) cmd_reset ;;
    fetch) require_tools; fetch_libs; build_probe; echo "$LIBS_DIR" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
