#!/usr/bin/env bash
# The local stack without Docker: a single-node KRaft Kafka 4.1.0 broker (JVM, jars from Maven Central)
# and FerretDB v1.24.2 on SQLite as the MongoDB-wire database (built with Go once).
#
#   bash scripts/stack.sh up     [SERVICE]   start (or reuse) and wait until ready; prints the settings
#   bash scripts/stack.sh down   [SERVICE]   stop what this script started (by recorded pid) and free the ports
#   bash scripts/stack.sh kill   [SERVICE]   SIGKILL it, as a crash would: no clean shutdown, data kept
#   bash scripts/stack.sh status [SERVICE]   which services run, pids, ports, state dir
#
# SERVICE is kafka or mongo; none means both. Stopping (or killing) and starting one service keeps its data
# (fault-injection tests restart the broker or the database mid-test).
#
# Environment (all optional):
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), MONGO_PORT (27017)
#   ACTIVITY_CACHE      downloads and builds, outside the clone (default ~/.cache/activity-service)
#   STACK_DIR           logs, data and pid files (default $ACTIVITY_CACHE/stack). Shared by every clone on the
#                       machine on purpose: `make stack-down` from any clone stops the one stack.
#   STACK_WAIT_TIMEOUT  seconds to wait for each service to answer (default 90)
set -euo pipefail

if ((BASH_VERSINFO[0] < 4)); then
    echo "[stack] error: bash 4+ is required (this is bash $BASH_VERSION; on macOS: 'brew install bash')." >&2
    exit 1
fi

KAFKA_VERSION=4.1.0
FERRETDB_VERSION=v1.24.2
FERRETDB_MODULE=github.com/FerretDB/FerretDB

HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
MONGO_PORT=${MONGO_PORT:-27017}
ACTIVITY_CACHE=${ACTIVITY_CACHE:-$HOME/.cache/activity-service}
STACK_DIR=${STACK_DIR:-$ACTIVITY_CACHE/stack}
WAIT_TIMEOUT=${STACK_WAIT_TIMEOUT:-90}
STOP_TIMEOUT=20

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
PROBE=$SCRIPT_DIR/stack_probe.py

KAFKA_HOME=$ACTIVITY_CACHE/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
FERRETDB_BIN=$ACTIVITY_CACHE/bin/ferretdb

KAFKA_STATE=$STACK_DIR/kafka
KAFKA_DATA=$KAFKA_STATE/data
KAFKA_CONFIG=$KAFKA_STATE/server.properties
KAFKA_LOG4J=$KAFKA_STATE/log4j2.properties
KAFKA_LOG=$KAFKA_STATE/server.log
KAFKA_STDOUT=$KAFKA_STATE/stdout.log
KAFKA_PIDFILE=$KAFKA_STATE/kafka.pid

MONGO_STATE=$STACK_DIR/ferretdb
MONGO_DATA=$MONGO_STATE/data
MONGO_LOG=$MONGO_STATE/ferretdb.log
MONGO_PIDFILE=$MONGO_STATE/ferretdb.pid

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] %s\n' "$*" >&2; }
die() {
    printf '[stack] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: bash scripts/stack.sh up|down|kill|status [kafka|mongo]
  up      start (or reuse) the local Kafka broker and FerretDB, wait until they answer, print the settings
  down    stop the processes this script started (by recorded pid) and free their ports
  kill    SIGKILL the processes this script started, as a crash would (no clean shutdown; data kept)
  status  show which services run, their pids, ports and the state directory
No service argument means both.
EOF
    exit 2
}

now() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then printf '%s' "${EPOCHREALTIME/,/.}"; else date +%s; fi
}

elapsed_since() { # start -> "12.3s"
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'
}

# --- processes and ports -------------------------------------------------------------------------------------

port_answers() { # port -> 0 when something accepts TCP connections on $HOST:port
    if command -v timeout >/dev/null 2>&1; then
        timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
    else # (macOS without coreutils) a loopback connect answers at once anyway
        bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
    fi
}

# A live process, not a zombie: a killed server stays a zombie until its parent (often init) reaps it, and
# kill -0 succeeds on a zombie.
alive() { # pid
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0 # no /proc (macOS): kill -0 is all there is
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

pid_cmdline() {
    if [[ -r /proc/$1/cmdline ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -o args= -p "$1" 2>/dev/null || true
    fi
}

# The pid recorded for a service, printed only when that process is alive AND is the one this script started
# (its command line names our state directory), so a recycled pid is never mistaken for ours.
our_pid() { # service -> pid (empty when not running)
    local pidfile marker pid
    case $1 in
    kafka) pidfile=$KAFKA_PIDFILE marker=$KAFKA_CONFIG ;;
    mongo) pidfile=$MONGO_PIDFILE marker=--state-dir=$MONGO_STATE ;;
    esac
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    [[ $(pid_cmdline "$pid") == *"$marker"* ]] || return 0
    printf '%s' "$pid"
}

port_holder() { # port -> "pid 123 (java)" when ss can tell, else empty
    command -v ss >/dev/null 2>&1 || return 0
    local out
    out=$(ss -H -ltnp "sport = :$1" 2>/dev/null || true)
    local re='users:\(\("([^"]+)",pid=([0-9]+)'
    if [[ $out =~ $re ]]; then printf 'pid %s (%s)' "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}"; fi
}

show_log_tail() { # file...
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        warn "----- last 30 lines of $f -----"
        tail -n 30 "$f" >&2
        warn "----- end of $f -----"
    done
}

# Starts "$@" in its own session (so Ctrl-C in the calling terminal does not reach it), detached from stdin,
# output appended to a log. The child writes its own pid before exec-ing the program, so the recorded pid is
# exactly the server process. fd 9 (the stack lock) is closed so the server does not keep holding it.
spawn() { # pidfile logfile command...
    local pidfile=$1 logfile=$2
    shift 2
    rm -f "$pidfile"
    local -a detach=()
    if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi # util-linux; absent on macOS
    # shellcheck disable=SC2016 # $$ and "$@" expand in the child shell
    nohup "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    for _ in $(seq 1 50); do
        [[ -s $pidfile ]] && return 0
        sleep 0.1
    done
    die "could not start $(basename "$1") (no pid recorded in $pidfile); see $logfile"
}

# --- prerequisites -----------------------------------------------------------------------------------------

need_python() {
    command -v python3 >/dev/null 2>&1 ||
        die "python3 is required (it runs scripts/stack_probe.py). Install Python 3.11+, e.g. 'apt-get install python3'."
}

java_cmd() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then printf '%s' "$JAVA_HOME/bin/java"; else printf 'java'; fi
}

need_java() {
    local java version major
    java=$(java_cmd)
    command -v "$java" >/dev/null 2>&1 ||
        die "java 17+ is required for the local Kafka broker and was not found. Install a JDK/JRE 17 or newer, e.g. 'apt-get install openjdk-17-jre-headless' (Debian/Ubuntu), 'brew install openjdk@17' (macOS), or set JAVA_HOME."
    local out re='version "([^"]+)"'
    out=$("$java" -version 2>&1 || true)
    version=""
    if [[ $out =~ $re ]]; then version=${BASH_REMATCH[1]}; fi
    major=${version%%.*}
    [[ $major == 1 ]] && major=$(cut -d. -f2 <<<"$version")
    [[ $major =~ ^[0-9]+$ ]] || die "could not read the Java version from '$java -version'; java 17+ is required for Kafka $KAFKA_VERSION."
    ((major >= 17)) ||
        die "java $version found, but Kafka $KAFKA_VERSION needs java 17+. Install a newer JDK/JRE (e.g. 'apt-get install openjdk-17-jre-headless') or point JAVA_HOME at one."
}

need_mvn() {
    command -v mvn >/dev/null 2>&1 ||
        die "mvn (Apache Maven 3.6+) is required once, to fetch the Kafka $KAFKA_VERSION jars into $KAFKA_LIBS. Install it, e.g. 'apt-get install maven' (Debian/Ubuntu) or 'brew install maven' (macOS)."
}

need_go() {
    local v minor
    command -v go >/dev/null 2>&1 ||
        die "go 1.21+ is required once, to build FerretDB $FERRETDB_VERSION into $FERRETDB_BIN. Install it from https://go.dev/dl/ (or 'brew install go'); Debian's golang-go is often too old."
    v=$(go env GOVERSION 2>/dev/null || true)
    minor=$(sed -n 's/^go1\.\([0-9]*\).*/\1/p' <<<"$v")
    [[ -z $minor ]] || ((minor >= 21)) ||
        die "$v found, but building FerretDB $FERRETDB_VERSION needs go 1.21+ (it then fetches the toolchain FerretDB pins). Install a newer Go from https://go.dev/dl/."
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# Kafka jars: resolved once with Maven into the cache; again only when missing or when the pom changed.
ensure_kafka_libs() {
    local want have tmp
    want=$(sha256_of "$KAFKA_POM")
    have=$(cat "$KAFKA_LIBS/.pom.sha256" 2>/dev/null || true)
    if [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar && $want == "$have" ]]; then
        return 0
    fi
    need_mvn
    say "resolving Kafka $KAFKA_VERSION jars from Maven Central (first run only)..."
    mkdir -p "$KAFKA_HOME"
    tmp=$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")
    if ! mvn -B -q dependency:copy-dependencies -f "$KAFKA_POM" -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
        cat "$tmp.log" >&2
        rm -rf "$tmp" "$tmp.log"
        die "Maven could not resolve the Kafka jars (see the output above). Check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)."
    fi
    rm -f "$tmp.log"
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "Maven ran but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
    printf '%s\n' "$want" >"$tmp/.pom.sha256"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    say "Kafka jars ready in $KAFKA_LIBS ($(find "$KAFKA_LIBS" -name '*.jar' | wc -l | tr -d ' ') jars)"
}

ferretdb_ok() { # (output captured first: `| grep -q` could SIGPIPE the binary and fail under pipefail)
    local out
    [[ -x $FERRETDB_BIN ]] || return 1
    out=$("$FERRETDB_BIN" --version 2>/dev/null) || return 1
    [[ $'\n'$out$'\n' == *$'\n'"version: $FERRETDB_VERSION"$'\n'* ]]
}

# FerretDB: `go install .../cmd/ferretdb@vX` builds a binary that panics at start ("Invalid
# build/version/version.txt file content"): the release version file is generated, not in the module. So the
# module source is copied out of the Go module cache, version.txt written, and the binary built from there.
ensure_ferretdb() {
    ferretdb_ok && return 0
    need_go
    say "building FerretDB $FERRETDB_VERSION with Go (first run only, 1-3 minutes)..."
    mkdir -p "$(dirname "$FERRETDB_BIN")"
    local work src out
    work=$(mktemp -d "$ACTIVITY_CACHE/ferretdb-build.XXXXXX")
    # shellcheck disable=SC2064 # expand $work now
    trap "rm -rf '$work'" EXIT
    src=$(cd "$work" && GOWORK=off go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" |
        python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or ""); sys.exit(1 if d.get("Error") else 0)') ||
        die "go could not download $FERRETDB_MODULE@$FERRETDB_VERSION. Check that the Go module proxy is reachable (GOPROXY=$(go env GOPROXY))."
    [[ -d $src ]] || die "go mod download did not report a source directory for $FERRETDB_MODULE@$FERRETDB_VERSION"
    cp -R "$src" "$work/src"
    chmod -R u+w "$work/src"
    printf '%s\n' "$FERRETDB_VERSION" >"$work/src/build/version/version.txt"
    out=$FERRETDB_BIN.tmp.$$
    if ! (cd "$work/src" && GOWORK=off GOFLAGS="-trimpath -buildvcs=false" go build -o "$out" ./cmd/ferretdb); then
        rm -f "$out"
        die "building FerretDB failed (see the Go output above)."
    fi
    mv -f "$out" "$FERRETDB_BIN"
    rm -rf "$work"
    trap - EXIT
    ferretdb_ok || die "the freshly built $FERRETDB_BIN does not report version $FERRETDB_VERSION"
    say "FerretDB ready at $FERRETDB_BIN"
}

# --- Kafka -------------------------------------------------------------------------------------------------

write_kafka_config() {
    mkdir -p "$KAFKA_DATA"
    cat >"$KAFKA_CONFIG" <<EOF
# Generated by scripts/stack.sh on every start; edit the script, not this file.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA

# One broker: every replication factor and min ISR is 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Fast start and fast tests: few internal partitions, no initial rebalance delay.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0
num.partitions=1
# After a crash (kill -9) the controller refuses the restarted broker's registration until the old session
# times out (DUPLICATE_BROKER_REGISTRATION): 4 s instead of 9 s keeps crash-restart tests quick.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

# The application creates its topics; a typo must fail, not create a topic.
auto.create.topics.enable=false
delete.topic.enable=true

# Small machine (2 cores).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
    cat >"$KAFKA_LOG4J" <<EOF
# Generated by scripts/stack.sh: the broker logs to $KAFKA_LOG (rolled at 20 MB, 3 files kept).
status = warn
name = activity-service-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $KAFKA_LOG
appender.file.filePattern = $KAFKA_LOG.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.network.name = kafka.network.RequestChannel\$
logger.network.level = WARN
EOF
}

kafka_java_cmd() { # -> the java command line (without main class) into the KAFKA_JAVA array
    KAFKA_JAVA=("$(java_cmd)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_LOG4J" -cp "$KAFKA_LIBS/*")
}

kafka_java() { # main class and arguments
    kafka_java_cmd
    "${KAFKA_JAVA[@]}" "$@"
}

# Formats the storage once. Kafka 4.1 with a static quorum (controller.quorum.voters) is formatted without
# --standalone (that flag is for a dynamic quorum, controller.quorum.bootstrap.servers). Restarts reuse the
# formatted directory: topics and committed offsets survive `down kafka` + `up kafka`.
format_kafka_storage() {
    [[ -f $KAFKA_DATA/meta.properties ]] && return 0
    local cluster_id
    cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_STDOUT" | tail -n 1)
    [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not generate a Kafka cluster id (got '$cluster_id'); see $KAFKA_STDOUT"
    say "formatting Kafka storage in $KAFKA_DATA (cluster id $cluster_id)"
    if ! kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONFIG" >>"$KAFKA_STDOUT" 2>&1; then
        show_log_tail "$KAFKA_STDOUT"
        die "formatting the Kafka storage failed (see above). If $KAFKA_DATA is half-written, remove $KAFKA_STATE and run up again."
    fi
}

start_kafka() {
    need_java
    ensure_kafka_libs
    mkdir -p "$KAFKA_STATE"
    write_kafka_config
    format_kafka_storage
    kafka_java_cmd
    printf '\n===== %s starting Kafka %s =====\n' "$(date '+%F %T')" "$KAFKA_VERSION" >>"$KAFKA_STDOUT"
    spawn "$KAFKA_PIDFILE" "$KAFKA_STDOUT" "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_CONFIG"
    say "kafka: started (pid $(<"$KAFKA_PIDFILE")), log $KAFKA_LOG"
}

# --- FerretDB ----------------------------------------------------------------------------------------------

start_mongo() {
    ensure_ferretdb
    mkdir -p "$MONGO_DATA"
    printf '\n===== %s starting FerretDB %s =====\n' "$(date '+%F %T')" "$FERRETDB_VERSION" >>"$MONGO_LOG"
    spawn "$MONGO_PIDFILE" "$MONGO_LOG" \
        "$FERRETDB_BIN" --handler=sqlite --sqlite-url="file:$MONGO_DATA/" \
        --listen-addr="$HOST:$MONGO_PORT" --state-dir="$MONGO_STATE" \
        --telemetry=disable --debug-addr=- --log-level=error
    say "mongo: started FerretDB (pid $(<"$MONGO_PIDFILE")), log $MONGO_LOG"
}

# --- up / down / kill / status -----------------------------------------------------------------------------

service_port() {
    case $1 in
    kafka) printf '%s' "$KAFKA_PORT" ;;
    mongo) printf '%s' "$MONGO_PORT" ;;
    esac
}

service_ports() { # every port it listens on
    case $1 in
    kafka) printf '%s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" ;;
    *) service_port "$1" ;;
    esac
}

service_port_variable() {
    case $1 in
    kafka) printf 'KAFKA_PORT' ;;
    mongo) printf 'MONGO_PORT' ;;
    esac
}

service_state() { # its directory under STACK_DIR
    case $1 in
    kafka) printf '%s' "$KAFKA_STATE" ;;
    mongo) printf '%s' "$MONGO_STATE" ;;
    esac
}

service_pidfile() {
    case $1 in
    kafka) printf '%s' "$KAFKA_PIDFILE" ;;
    mongo) printf '%s' "$MONGO_PIDFILE" ;;
    esac
}

service_log() { # the main log
    case $1 in
    kafka) printf '%s' "$KAFKA_LOG" ;;
    mongo) printf '%s' "$MONGO_LOG" ;;
    esac
}

service_logs() { # every log worth showing when it fails
    case $1 in
    kafka) printf '%s\n' "$KAFKA_LOG" "$KAFKA_STDOUT" ;;
    mongo) printf '%s\n' "$MONGO_LOG" ;;
    esac
}

service_setting() { # the line `up` prints for it
    case $1 in
    kafka) printf 'KAFKA_BOOTSTRAP_SERVERS=%s:%s' "$HOST" "$KAFKA_PORT" ;;
    mongo) printf 'MONGODB_URI=mongodb://%s:%s' "$HOST" "$MONGO_PORT" ;;
    esac
}

probe() { # service -> 0 when it answers its protocol
    python3 "$PROBE" "$1" "$HOST:$(service_port "$1")" --timeout 2
}

probe_reason() { # service -> why the probe fails, in the probe's words
    python3 "$PROBE" "$1" "$HOST:$(service_port "$1")" --timeout 2 --verbose 2>&1 >/dev/null | sed 's/^[^ ]* [^ ]*: //'
}

# Waits until the service answers its protocol. $2 is the pid to watch ("" for a process that is not ours).
wait_ready() { # service pid timeout
    local service=$1 pid=$2 timeout=$3 start logs
    start=$(date +%s)
    while ! probe "$service"; do
        if [[ -n $pid ]] && ! alive "$pid"; then
            mapfile -t logs < <(service_logs "$service")
            show_log_tail "${logs[@]}"
            rm -f "$(service_pidfile "$service")"
            die "$service exited while starting (pid $pid); its log is above. Fix the cause and run 'bash scripts/stack.sh up $service' again."
        fi
        if (($(date +%s) - start >= timeout)); then
            if [[ -n $pid ]]; then
                mapfile -t logs < <(service_logs "$service")
                show_log_tail "${logs[@]}"
                die "$service did not answer on $HOST:$(service_port "$service") within ${timeout}s (pid $pid still running; log above; last answer: $(probe_reason "$service")). Try 'bash scripts/stack.sh down $service && bash scripts/stack.sh up $service'; if it keeps failing, remove $(service_state "$service") (its data is lost) and run up again."
            fi
            local holder
            holder=$(port_holder "$(service_port "$service")")
            die "$HOST:$(service_port "$service") is taken by a process this script did not start${holder:+ ($holder)}, and it does not answer as this stack's $service ($(probe_reason "$service")). Stop it, or use another port ($(service_port_variable "$service")=...)."
        fi
        sleep 0.5
    done
}

up_service() { # service -> sets RESULT[service]: started / reused / reused (not ours)
    local service=$1 port pid
    port=$(service_port "$service")
    pid=$(our_pid "$service")
    if [[ -n $pid ]]; then
        if probe "$service"; then
            say "$service: already running (pid $pid) on $HOST:$port"
            RESULT[$service]=reused
            return 0
        fi
        say "$service: process $pid is up but not answering yet; waiting..."
        wait_ready "$service" "$pid" "$WAIT_TIMEOUT"
        RESULT[$service]=reused
        return 0
    fi
    if port_answers "$port"; then
        local holder
        holder=$(port_holder "$port")
        say "note: $HOST:$port is already served by a process this script did not start${holder:+ ($holder)}; reusing it. 'down' will not stop it."
        wait_ready "$service" "" 10
        RESULT[$service]="reused (not ours)"
        return 0
    fi
    if [[ $service == kafka ]] && port_answers "$KAFKA_CONTROLLER_PORT"; then
        die "the Kafka controller port $HOST:$KAFKA_CONTROLLER_PORT is taken by another process ($(port_holder "$KAFKA_CONTROLLER_PORT")). Stop it or set KAFKA_CONTROLLER_PORT."
    fi
    "start_$service"
    # The pid just recorded, not our_pid: a server that already crashed must be reported as a crash.
    wait_ready "$service" "$(<"$(service_pidfile "$service")")" "$WAIT_TIMEOUT"
    RESULT[$service]=started
}

cmd_up() {
    local start service
    start=$(now)
    need_python
    mkdir -p "$STACK_DIR"
    lock_stack
    declare -gA RESULT=()
    for service in "${SERVICES[@]}"; do
        up_service "$service"
    done
    local summary=""
    for service in "${SERVICES[@]}"; do summary+="${summary:+, }$service ${RESULT[$service]}"; done
    say "ready in $(elapsed_since "$start") ($summary; state in $STACK_DIR)"
    for service in "${SERVICES[@]}"; do service_setting "$service" && echo; done
}

# The process and its children (a server may fork workers, each in a session of its own). The parent is
# stopped (SIGSTOP) first so that it forks nothing new while they are listed, then all get SIGKILL at once:
# what a crash of the whole server looks like. Returns once none is alive.
kill_tree() { # service pid
    local service=$1 pid=$2 child waited=0
    local -a pids=("$pid")
    kill -STOP "$pid" 2>/dev/null || return 0
    if command -v pgrep >/dev/null 2>&1; then
        while read -r child; do [[ -n $child ]] && pids+=("$child"); done <<<"$(pgrep -P "$pid" || true)"
    fi
    kill -KILL "${pids[@]}" 2>/dev/null || true
    for child in "${pids[@]}"; do
        while alive "$child"; do
            ((waited >= 100)) && die "$service: pid $child is still alive 10 s after SIGKILL"
            sleep 0.1
            waited=$((waited + 1))
        done
    done
}

stop_pid() { # service pid
    local service=$1 pid=$2 waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while alive "$pid"; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            warn "$service (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
            kill_tree "$service" "$pid"
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

wait_ports_free() { # service -> 0 when its ports are free
    local service=$1 port holder rc=0
    while read -r port; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            port_answers "$port" || continue 2
            sleep 0.5
        done
        holder=$(port_holder "$port")
        warn "$HOST:$port is still in use by a process this script did not start${holder:+ ($holder)}; left alone."
        rc=1
    done <<<"$(service_ports "$service")"
    return "$rc"
}

down_service() { # service -> 0 when its ports are free afterwards
    local service=$1 pid pidfile start
    start=$(now)
    pidfile=$(service_pidfile "$service")
    pid=$(our_pid "$service")
    if [[ -n $pid ]]; then
        stop_pid "$service" "$pid"
        say "$service: stopped (pid $pid) in $(elapsed_since "$start")"
    else
        say "$service: not running (no live process recorded in $pidfile)"
    fi
    rm -f "$pidfile"
    wait_ports_free "$service"
}

kill_service() { # service -> 0 when its ports are free afterwards
    local service=$1 pid pidfile
    pidfile=$(service_pidfile "$service")
    pid=$(our_pid "$service")
    if [[ -n $pid ]]; then
        kill_tree "$service" "$pid"
        say "$service: killed (SIGKILL, pid $pid); its data is kept: 'bash scripts/stack.sh up $service' starts it again"
    else
        say "$service: not running (no live process recorded in $pidfile)"
    fi
    rm -f "$pidfile"
    wait_ports_free "$service"
}

cmd_down() { # down | kill
    mkdir -p "$STACK_DIR"
    lock_stack
    local rc=0 service
    for service in "${SERVICES[@]}"; do
        "$1_service" "$service" || rc=1
    done
    return "$rc"
}

cmd_status() {
    local service pid port state extra holder
    need_python
    say "state dir: $STACK_DIR"
    for service in "${SERVICES[@]}"; do
        pid=$(our_pid "$service")
        port=$(service_port "$service")
        extra=""
        [[ $service == kafka ]] && extra=" (controller $HOST:$KAFKA_CONTROLLER_PORT)"
        if [[ -n $pid ]]; then
            if probe "$service"; then state="running, ready"; else state="running, not answering yet"; fi
            printf '  %-8s %-28s pid %-8s %s:%s%s  log %s\n' "$service" "$state" "$pid" "$HOST" "$port" "$extra" \
                "$(service_log "$service")"
        elif port_answers "$port"; then
            holder=$(port_holder "$port")
            printf '  %-8s %-28s %s:%s is served by a process this script did not start%s\n' "$service" \
                "foreign" "$HOST" "$port" "${holder:+ ($holder)}"
        else
            printf '  %-8s %-28s %s:%s%s\n' "$service" "stopped" "$HOST" "$port" "$extra"
        fi
    done
}

# One `up`/`down`/`kill` at a time per state dir (two clones running `make stack-up` together must not start
# two brokers). The servers are spawned with fd 9 closed, so they never hold this lock.
lock_stack() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$STACK_DIR/.lock"
    if ! flock -n 9; then
        say "another 'stack.sh up/down/kill' is running on $STACK_DIR; waiting for it..."
        flock -w 300 9 || die "timed out waiting for the lock on $STACK_DIR/.lock"
    fi
}

main() {
    [[ $# -ge 1 && $# -le 2 ]] || usage
    local action=$1
    case ${2:-all} in
    all) SERVICES=(kafka mongo) ;;
    kafka) SERVICES=(kafka) ;;
    mongo | ferretdb) SERVICES=(mongo) ;;
    *) usage ;;
    esac
    case $action in
    up) cmd_up ;;
    down) cmd_down down ;;
    kill) cmd_down kill ;;
    status) cmd_status ;;
    *) usage ;;
    esac
}

main "$@"
