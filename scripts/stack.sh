#!/usr/bin/env bash
# The local stack without Docker: Apache Kafka 4.1.0 in KRaft mode (JVM, jars from Maven Central; one node by
# default, or a cluster of STACK_KAFKA_BROKERS nodes), FerretDB v1.24.2 as the MongoDB-wire database (built
# with Go once; on SQLite, or on the stack's PostgreSQL with STACK_FERRETDB_BACKEND=postgresql) and
# PostgreSQL 15 (the system's binaries; Debian's postgresql-15 package is installed when missing and running
# as root).
#
#   bash scripts/stack.sh up     [SERVICE [NODE]]  start (or reuse) and wait until ready; prints the settings
#   bash scripts/stack.sh down   [SERVICE [NODE]]  stop what this script started (by recorded pid), free the ports
#   bash scripts/stack.sh kill   [SERVICE [NODE]]  SIGKILL it, as a crash would: no clean shutdown, data kept
#   bash scripts/stack.sh status [SERVICE [NODE]]  which services run, pids, ports, state dir
#   bash scripts/stack.sh cut    kafka NODE [peers] drop every packet of that Kafka node (root, nftables);
#                                                   with `peers`, only between it and the other nodes
#   bash scripts/stack.sh heal   [kafka [NODE]]    remove the cut (none: every cut of this stack)
#
# SERVICE is kafka, mongo or postgres; none means all three. NODE (1, 2, 3...) picks one node of a Kafka
# cluster; without it, `kafka` means every node. Stopping (or killing) and starting one service keeps its
# data (fault-injection tests restart the broker or a database mid-test).
#
# Environment (all optional):
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), MONGO_PORT (27017), POSTGRES_PORT (5432)
#   STACK_KAFKA_BROKERS  Kafka nodes (default 1). More than one: a KRaft cluster on loopback, each node broker and
#                        controller, node N on KAFKA_PORT + 10*(N-1) (its controller on KAFKA_CONTROLLER_PORT +
#                        10*(N-1)), its own data directory and logs under STACK_DIR/kafka-cluster/node-N;
#                        replication factor min(3, nodes), min.insync.replicas one fewer (at least 1), unclean
#                        leader election off. A running cluster is reused without the variable; a single broker
#                        and a cluster never run together in one STACK_DIR (they share the first ports).
#   STACK_KAFKA_SASL_SSL_PORT  also listen with SASL_SSL there (node N: + 10*(N-1)): SASL PLAIN, SCRAM-SHA-256 and
#                        SCRAM-SHA-512 over TLS. Needs STACK_KAFKA_TLS_KEYSTORE.
#   STACK_KAFKA_SSL_PORT also listen with SSL there, client certificates required (mutual TLS, signed by
#                        STACK_KAFKA_TLS_CA). Needs STACK_KAFKA_TLS_KEYSTORE and STACK_KAFKA_TLS_CA.
#   STACK_KAFKA_TLS_KEYSTORE  PEM file: the broker's private key (unencrypted PKCS#8) and certificate chain
#   STACK_KAFKA_TLS_CA   PEM file: the CA that signs client certificates (the SSL listener)
#   STACK_KAFKA_SASL_USERS  "name:password,..." SASL users: PLAIN users of the listener and SCRAM credentials
#                        (both SHA-256 and SHA-512, made with Kafka's own kafka-configs tool once it runs)
#   ACTIVITY_CACHE      downloads and builds, outside the clone (default ~/.cache/activity-service)
#   STACK_DIR           logs, data and pid files (default $ACTIVITY_CACHE/stack). Shared by every clone on the
#                       machine on purpose: `make stack-down` from any clone stops the one stack.
#   STACK_WAIT_TIMEOUT  seconds to wait for each service to answer (default 90)
#   STACK_FERRETDB_BACKEND  sqlite or postgresql: where FerretDB keeps its data. postgresql: in the database
#                       `ferretdb` of the stack's PostgreSQL (created when missing; PostgreSQL is then started
#                       and ready before FerretDB). Without the variable FerretDB starts on the backend it last
#                       ran on in this STACK_DIR (so `down mongo` and `up mongo`, as the fault tests do, keep
#                       its data), sqlite the first time. A running FerretDB on the other one is an error:
#                       `down mongo` first (each backend's data stays where it is).
#   POSTGRES_BINDIR     where PostgreSQL 15's postgres and initdb are (default: found, see find_postgres)
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
POSTGRES_PORT=${POSTGRES_PORT:-5432}
ACTIVITY_CACHE=${ACTIVITY_CACHE:-$HOME/.cache/activity-service}
STACK_DIR=${STACK_DIR:-$ACTIVITY_CACHE/stack}
[[ $STACK_DIR == /* ]] || STACK_DIR=$PWD/$STACK_DIR # the PostgreSQL server resolves paths from its data dir
WAIT_TIMEOUT=${STACK_WAIT_TIMEOUT:-90}
STOP_TIMEOUT=20

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
PROBE=$SCRIPT_DIR/stack_probe.py

KAFKA_HOME=$ACTIVITY_CACHE/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
FERRETDB_BIN=$ACTIVITY_CACHE/bin/ferretdb

KAFKA_SINGLE_STATE=$STACK_DIR/kafka             # the single broker (STACK_KAFKA_BROKERS=1, the default)
KAFKA_CLUSTER_DIR=$STACK_DIR/kafka-cluster       # a cluster: node-N/ per node, its size and cluster id
KAFKA_NODE_PORT_STEP=10
SASL_SSL_PORT=${STACK_KAFKA_SASL_SSL_PORT:-}
SSL_PORT=${STACK_KAFKA_SSL_PORT:-}
TLS_KEYSTORE=${STACK_KAFKA_TLS_KEYSTORE:-}
TLS_CA=${STACK_KAFKA_TLS_CA:-}
SASL_USERS=${STACK_KAFKA_SASL_USERS:-}

MONGO_STATE=$STACK_DIR/ferretdb
MONGO_DATA=$MONGO_STATE/data
MONGO_LOG=$MONGO_STATE/ferretdb.log
MONGO_PIDFILE=$MONGO_STATE/ferretdb.pid
MONGO_BACKEND_FILE=$MONGO_STATE/backend # the backend FerretDB was last started on
FERRETDB_PG_DATABASE=ferretdb           # its database on the stack's PostgreSQL (the postgresql backend)

POSTGRES_MAJOR=15
POSTGRES_ROLE=activity # the application's role (CREATEDB: tests create a database per run)
POSTGRES_DB=activity_service
POSTGRES_SUPERUSER=postgres # the bootstrap superuser, reachable only through the Unix socket
POSTGRES_OS_USER=postgres   # the system user the server runs as when this script runs as root
POSTGRES_STATE=$STACK_DIR/postgres
POSTGRES_DATA=$POSTGRES_STATE/data
POSTGRES_SOCKET_DIR=$POSTGRES_STATE/run
POSTGRES_CONFIG=$POSTGRES_STATE/postgresql.conf
POSTGRES_HBA=$POSTGRES_STATE/pg_hba.conf
POSTGRES_LOG=$POSTGRES_STATE/postgres.log
POSTGRES_PIDFILE=$POSTGRES_STATE/postgres.pid

say() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] %s\n' "$*" >&2; }
die() {
    printf '[stack] error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: bash scripts/stack.sh up|down|kill|status [kafka [NODE]|mongo|postgres]
       bash scripts/stack.sh cut kafka NODE [peers]
       bash scripts/stack.sh heal [kafka [NODE]]
  up      start (or reuse) the local Kafka broker (or cluster: STACK_KAFKA_BROKERS=3), FerretDB and
          PostgreSQL, wait until they answer, print the settings
  down    stop the processes this script started (by recorded pid) and free their ports
  kill    SIGKILL the processes this script started, as a crash would (no clean shutdown; data kept)
  status  show which services run, their pids, ports and the state directory
  cut     drop every packet a Kafka node sends or receives (nftables, by its cgroup; needs root); with
          'peers', only those between it and the other nodes: clients still reach it
  heal    remove the cut of that node, or every cut of this stack
No service argument means all three; kafka without NODE means every Kafka node.
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
    kafka*) kafka_unit "$1" && pidfile=$K_PIDFILE marker=$K_CONFIG ;;
    mongo) pidfile=$MONGO_PIDFILE marker=--state-dir=$MONGO_STATE ;;
    postgres) pidfile=$POSTGRES_PIDFILE marker=config_file=$POSTGRES_CONFIG ;;
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
# SPAWN_CGROUP, when set, is a cgroup v2 directory the child enters before the exec: every socket the server
# opens then belongs to that cgroup, which is what `cut` matches packets by.
spawn() { # pidfile logfile command...
    local pidfile=$1 logfile=$2
    shift 2
    rm -f "$pidfile"
    local -a detach=()
    if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi # util-linux; absent on macOS
    # shellcheck disable=SC2016 # $$ and "$@" expand in the child shell
    nohup "${detach[@]}" bash -c 'echo $$ >"$0"; if [[ -n $1 ]]; then echo $$ >"$1/cgroup.procs"; fi; shift; exec "$@"' \
        "$pidfile" "${SPAWN_CGROUP:-}" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
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

# How many Kafka nodes this run is about: STACK_KAFKA_BROKERS when given; else, when a cluster of this
# STACK_DIR runs (or a node of it is named), its recorded size; else 1 (the single broker).
resolve_kafka_brokers() { # [node named on the command line]
    local recorded
    recorded=$(cat "$KAFKA_CLUSTER_DIR/brokers" 2>/dev/null || true)
    if [[ -n ${STACK_KAFKA_BROKERS:-} ]]; then
        [[ $STACK_KAFKA_BROKERS =~ ^[1-9]$ ]] ||
            die "STACK_KAFKA_BROKERS=$STACK_KAFKA_BROKERS: expected a number of Kafka nodes from 1 to 9."
        KAFKA_BROKERS=$STACK_KAFKA_BROKERS
    elif [[ $recorded =~ ^[1-9]$ ]] && { [[ -n ${1:-} ]] || cluster_alive "$recorded"; }; then
        KAFKA_BROKERS=$recorded
    else
        KAFKA_BROKERS=1
    fi
}

cluster_alive() { # recorded size -> 0 when any node of this STACK_DIR's cluster runs
    local n
    for ((n = 1; n <= $1; n++)); do
        [[ -n $(our_pid "kafka$n") ]] && return 0
    done
    return 1
}

kafka_units() { # -> the Kafka units of the resolved size: "kafka" (the single broker) or kafka1 .. kafkaN
    local n
    if ((KAFKA_BROKERS == 1)); then
        printf '%s\n' kafka
        return 0
    fi
    for ((n = 1; n <= KAFKA_BROKERS; n++)); do printf 'kafka%s\n' "$n"; done
}

label() { # unit -> how messages name it: "kafka", "kafka 2", "mongo"
    case $1 in
    kafka[0-9]*) printf 'kafka %s' "${1#kafka}" ;;
    *) printf '%s' "$1" ;;
    esac
}

# A unit's paths and ports, into K_* globals. Node N of a cluster listens on the first node's ports + 10*(N-1).
kafka_unit() { # unit (kafka: the single broker; kafkaN: node N of the cluster)
    local n=${1#kafka} offset
    if [[ -z $n ]]; then
        K_NODE=1 K_STATE=$KAFKA_SINGLE_STATE offset=0
    else
        K_NODE=$n K_STATE=$KAFKA_CLUSTER_DIR/node-$n offset=$(((n - 1) * KAFKA_NODE_PORT_STEP))
    fi
    K_PORT=$((KAFKA_PORT + offset))
    K_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + offset))
    K_SASL_SSL_PORT=${SASL_SSL_PORT:+$((SASL_SSL_PORT + offset))}
    K_SSL_PORT=${SSL_PORT:+$((SSL_PORT + offset))}
    K_DATA=$K_STATE/data
    K_CONFIG=$K_STATE/server.properties
    K_LOG4J=$K_STATE/log4j2.properties
    K_LOG=$K_STATE/server.log
    K_STDOUT=$K_STATE/stdout.log
    K_PIDFILE=$K_STATE/kafka.pid
}

# Replication of the service's topics (and Kafka's internal ones) on KAFKA_BROKERS nodes: three copies where
# there are three nodes, acknowledged (acks=all) once all but one of them have it.
kafka_replication() { # -> K_RF, K_MIN_ISR
    K_RF=$((KAFKA_BROKERS < 3 ? KAFKA_BROKERS : 3))
    K_MIN_ISR=$((K_RF > 1 ? K_RF - 1 : 1))
}

kafka_bootstrap() { # -> host:port of every node, comma-separated
    local unit list=""
    while read -r unit; do
        kafka_unit "$unit"
        list+="${list:+,}$HOST:$K_PORT"
    done <<<"$(kafka_units)"
    printf '%s' "$list"
}

kafka_voters() { # -> controller.quorum.voters
    local n voters=""
    if ((KAFKA_BROKERS == 1)); then
        printf '1@%s:%s' "$HOST" "$KAFKA_CONTROLLER_PORT"
        return 0
    fi
    for ((n = 1; n <= KAFKA_BROKERS; n++)); do
        voters+="${voters:+,}$n@$HOST:$((KAFKA_CONTROLLER_PORT + (n - 1) * KAFKA_NODE_PORT_STEP))"
    done
    printf '%s' "$voters"
}

sasl_users() { # -> "name password" per line, from STACK_KAFKA_SASL_USERS ("name:password,...")
    local entry
    [[ -n $SASL_USERS ]] || return 0
    IFS=, read -ra entries <<<"$SASL_USERS"
    for entry in "${entries[@]}"; do
        [[ $entry =~ ^([A-Za-z0-9._-]+):([A-Za-z0-9._-]+)$ ]] ||
            die "STACK_KAFKA_SASL_USERS: '$entry' is not name:password (letters, digits, '.', '_', '-' only)."
        printf '%s %s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    done
}

check_tls_settings() {
    [[ -n $SASL_SSL_PORT$SSL_PORT ]] || return 0
    [[ -n $TLS_KEYSTORE && -r $TLS_KEYSTORE ]] ||
        die "STACK_KAFKA_SASL_SSL_PORT / STACK_KAFKA_SSL_PORT need STACK_KAFKA_TLS_KEYSTORE: a readable PEM file with the broker's private key and certificate chain (got '${TLS_KEYSTORE}')."
    [[ -z $SSL_PORT || (-n $TLS_CA && -r $TLS_CA) ]] ||
        die "STACK_KAFKA_SSL_PORT (client certificates required) needs STACK_KAFKA_TLS_CA: a readable PEM file with the CA that signs them (got '${TLS_CA}')."
    [[ -z $SASL_SSL_PORT || -n $SASL_USERS ]] ||
        die "STACK_KAFKA_SASL_SSL_PORT needs STACK_KAFKA_SASL_USERS (name:password,...): a SASL listener without users lets nobody in."
}

write_kafka_config() { # unit (K_* set)
    mkdir -p "$K_DATA"
    kafka_replication
    local listeners advertised role
    listeners="PLAINTEXT://$HOST:$K_PORT,CONTROLLER://$HOST:$K_CONTROLLER_PORT"
    advertised="PLAINTEXT://$HOST:$K_PORT"
    if [[ -n $K_SASL_SSL_PORT ]]; then
        listeners+=",SASL_SSL://$HOST:$K_SASL_SSL_PORT"
        advertised+=",SASL_SSL://$HOST:$K_SASL_SSL_PORT"
    fi
    if [[ -n $K_SSL_PORT ]]; then
        listeners+=",SSL://$HOST:$K_SSL_PORT"
        advertised+=",SSL://$HOST:$K_SSL_PORT"
    fi
    if ((KAFKA_BROKERS == 1)); then
        role="Single-node KRaft: this process is both broker and controller."
    else
        role="Node $K_NODE of a $KAFKA_BROKERS-node KRaft cluster on loopback; every node is both broker and controller."
    fi
    cat >"$K_CONFIG" <<EOF
# Generated by scripts/stack.sh on every start; edit the script, not this file.
# $role
process.roles=broker,controller
node.id=$K_NODE
controller.quorum.voters=$(kafka_voters)
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
log.dirs=$K_DATA

# $KAFKA_BROKERS node(s): replication factor $K_RF, acks=all answered once $K_MIN_ISR replica(s) have a record.
# No unclean leader election: a replica that is not in sync never becomes leader (it could lack
# acknowledged records).
default.replication.factor=$K_RF
min.insync.replicas=$K_MIN_ISR
unclean.leader.election.enable=false
offsets.topic.replication.factor=$K_RF
transaction.state.log.replication.factor=$K_RF
transaction.state.log.min.isr=$K_MIN_ISR
share.coordinator.state.topic.replication.factor=$K_RF
share.coordinator.state.topic.min.isr=$K_MIN_ISR

# Fast start and fast tests: few internal partitions, no initial rebalance delay.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0
num.partitions=1
# After a crash (kill -9) the controller refuses the restarted broker's registration until the old session
# times out (DUPLICATE_BROKER_REGISTRATION): 3 s instead of 9 s keeps crash-restart tests quick. It is also
# how long a crashed (or cut off) node keeps its leaderships before the controller moves them: at 4 s a
# leader's SIGKILL cost a 5.7 s window of 503s in a CI run (#21's target is 5 s). A heartbeat every 0.5 s
# lets a live broker miss five before it is fenced.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500

# The application creates its topics; a typo must fail, not create a topic.
auto.create.topics.enable=false
delete.topic.enable=true

# Small machine (2 cores).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
    if [[ -n $K_SASL_SSL_PORT$K_SSL_PORT ]]; then
        cat >>"$K_CONFIG" <<EOF

# TLS listeners: the broker's private key and certificate chain (PEM, STACK_KAFKA_TLS_KEYSTORE).
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_KEYSTORE
EOF
    fi
    if [[ -n $K_SSL_PORT ]]; then
        cat >>"$K_CONFIG" <<EOF
# SSL listener: mutual TLS, a client certificate signed by STACK_KAFKA_TLS_CA is required.
listener.name.ssl.ssl.client.auth=required
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$TLS_CA
EOF
    fi
    if [[ -n $K_SASL_SSL_PORT ]]; then
        local plain="" name password
        while read -r name password; do
            [[ -n $name ]] && plain+=" user_$name=\"$password\""
        done <<<"$(sasl_users)"
        cat >>"$K_CONFIG" <<EOF
# SASL_SSL listener: PLAIN users listed here, SCRAM credentials stored in the cluster's metadata (made with
# kafka-configs once the broker runs).
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$plain;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
    fi
    cat >"$K_LOG4J" <<EOF
# Generated by scripts/stack.sh: the broker logs to $K_LOG (rolled at 20 MB, 3 files kept).
status = warn
name = activity-service-kafka
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $K_LOG
appender.file.filePattern = $K_LOG.%i
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

kafka_java_cmd() { # log4j2 config -> the java command line (without main class) into the KAFKA_JAVA array
    KAFKA_JAVA=("$(java_cmd)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$1" -cp "$KAFKA_LIBS/*")
}

kafka_java() { # main class and arguments (K_* set: logs to the unit's log)
    kafka_java_cmd "$K_LOG4J"
    "${KAFKA_JAVA[@]}" "$@"
}

new_cluster_id() {
    local cluster_id
    cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$K_STDOUT" | tail -n 1)
    [[ $cluster_id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not generate a Kafka cluster id (got '$cluster_id'); see $K_STDOUT"
    printf '%s' "$cluster_id"
}

# Formats the storage once. Kafka 4.1 with a static quorum (controller.quorum.voters) is formatted without
# --standalone (that flag is for a dynamic quorum, controller.quorum.bootstrap.servers). Restarts reuse the
# formatted directory: topics and committed offsets survive `down kafka` + `up kafka`. The nodes of a cluster
# share one cluster id, made with the first.
format_kafka_storage() { # unit (K_* set)
    [[ -f $K_DATA/meta.properties ]] && return 0
    local cluster_id
    if [[ $1 == kafka ]]; then
        cluster_id=$(new_cluster_id)
    else
        cluster_id=$(cat "$KAFKA_CLUSTER_DIR/cluster.id" 2>/dev/null || true)
        if [[ -z $cluster_id ]]; then
            cluster_id=$(new_cluster_id)
            printf '%s\n' "$cluster_id" >"$KAFKA_CLUSTER_DIR/cluster.id"
        fi
    fi
    say "$(label "$1"): formatting Kafka storage in $K_DATA (cluster id $cluster_id)"
    if ! kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$K_CONFIG" >>"$K_STDOUT" 2>&1; then
        show_log_tail "$K_STDOUT"
        die "formatting the Kafka storage failed (see above). If $K_DATA is half-written, remove $K_STATE and run up again."
    fi
}

# A single broker and a cluster of one STACK_DIR share the first ports, and a cluster's nodes were formatted
# for its size: say what to do instead of starting something that cannot work.
check_kafka_layout() {
    local recorded
    recorded=$(cat "$KAFKA_CLUSTER_DIR/brokers" 2>/dev/null || true)
    if ((KAFKA_BROKERS > 1)); then
        [[ -z $(our_pid kafka) ]] ||
            die "the single Kafka broker of $STACK_DIR runs on $HOST:$KAFKA_PORT; stop it first ('bash scripts/stack.sh down kafka' without STACK_KAFKA_BROKERS): the cluster's first node takes its ports."
        [[ -z $recorded || $recorded == "$KAFKA_BROKERS" ]] ||
            die "the Kafka cluster in $KAFKA_CLUSTER_DIR was made with $recorded nodes; use STACK_KAFKA_BROKERS=$recorded, or remove $KAFKA_CLUSTER_DIR (its data is lost) to make one of $KAFKA_BROKERS."
    elif [[ $recorded =~ ^[1-9]$ ]] && cluster_alive "$recorded"; then
        die "a $recorded-node Kafka cluster of $STACK_DIR runs; stop it first ('bash scripts/stack.sh down kafka'): the single broker takes its first node's ports."
    fi
}

start_kafka() { # unit
    need_java
    ensure_kafka_libs
    check_tls_settings
    kafka_unit "$1"
    mkdir -p "$K_STATE"
    [[ $1 == kafka ]] || printf '%s\n' "$KAFKA_BROKERS" >"$KAFKA_CLUSTER_DIR/brokers"
    write_kafka_config "$1"
    format_kafka_storage "$1"
    kafka_java_cmd "$K_LOG4J"
    printf '\n===== %s starting Kafka %s =====\n' "$(date '+%F %T')" "$KAFKA_VERSION" >>"$K_STDOUT"
    SPAWN_CGROUP=$(node_cgroup "$1") spawn "$K_PIDFILE" "$K_STDOUT" "${KAFKA_JAVA[@]}" kafka.Kafka "$K_CONFIG"
    say "$(label "$1"): started (pid $(<"$K_PIDFILE")), log $K_LOG"
}

# SCRAM credentials live in the cluster's metadata, so they are made once the broker runs, with Kafka's own
# kafka-configs tool (kafka.admin.ConfigCommand), through the PLAINTEXT listener; again only when the user list
# changed. PLAIN users need nothing more: they are in the listener's configuration.
ensure_scram_users() {
    [[ -n $SASL_SSL_PORT && -n $SASL_USERS ]] || return 0
    local unit marker want name password mechanism tools_log4j
    unit=$(kafka_units | head -n 1)
    kafka_unit "$unit"
    marker=$K_STATE/../scram-users.sha256
    [[ $unit == kafka ]] && marker=$K_STATE/scram-users.sha256
    want=$(printf '%s' "$SASL_USERS" | cksum | cut -d' ' -f1)
    [[ $(cat "$marker" 2>/dev/null || true) == "$want" ]] && return 0
    tools_log4j=$STACK_DIR/kafka-tools-log4j2.properties
    printf 'status = warn\nappender.err.type = Console\nappender.err.name = ERR\nappender.err.target = SYSTEM_ERR\nappender.err.layout.type = PatternLayout\nappender.err.layout.pattern = %%p %%m%%n\nrootLogger.level = WARN\nrootLogger.appenderRef.err.ref = ERR\n' >"$tools_log4j"
    kafka_java_cmd "$tools_log4j"
    # One mechanism per call: the broker refuses two credentials of one user in one request.
    while read -r name password; do
        [[ -n $name ]] || continue
        for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
            if ! "${KAFKA_JAVA[@]}" kafka.admin.ConfigCommand --bootstrap-server "$HOST:$K_PORT" --alter \
                --add-config "$mechanism=[password=$password]" --entity-type users --entity-name "$name" \
                >>"$K_STDOUT" 2>&1; then
                show_log_tail "$K_STDOUT"
                die "kafka-configs could not create the $mechanism credentials of '$name' (see above)."
            fi
        done
        say "kafka: SCRAM-SHA-256 and SCRAM-SHA-512 credentials of '$name' made (kafka-configs)"
    done <<<"$(sasl_users)"
    printf '%s\n' "$want" >"$marker"
}

# --- network cuts (nftables, matched by cgroup) ------------------------------------------------------------
#
# Each Kafka node starts in a cgroup v2 of its own (when running as root), so every socket it opens carries
# that cgroup. `cut` then drops, in the output and input hooks of an nftables table of this stack, the
# packets those sockets send and receive: on loopback, where every node shares 127.0.0.1, the cgroup is what
# tells one node's traffic from another's (ports cannot: a node's outgoing connections use ephemeral ports).
# `heal` deletes the table. Nothing else on the machine is touched.

cgroup2_root() { awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts 2>/dev/null || true; }

stack_tag() { printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1; }

node_cgroup() { # unit -> its cgroup v2 directory (made when missing), empty where there can be none
    ((EUID == 0)) || return 0
    local root dir
    root=$(cgroup2_root)
    [[ -n $root && -w $root ]] || return 0
    dir=$root/activity-stack-$(stack_tag)/$1
    mkdir -p "$dir" 2>/dev/null || return 0
    printf '%s' "$dir"
}

nft_cgroup_path() { # unit -> its cgroup as nft names it (relative to /sys/fs/cgroup, where nft looks)
    local root rel
    root=$(cgroup2_root)
    [[ $root == /sys/fs/cgroup || $root == /sys/fs/cgroup/* ]] ||
        die "nft resolves cgroup paths under /sys/fs/cgroup, but cgroup v2 is mounted at '${root:-nowhere}'."
    rel=${root#/sys/fs/cgroup}
    rel=${rel#/}
    printf '%s' "${rel:+$rel/}activity-stack-$(stack_tag)/$1"
}

nft_table() { printf 'activity_stack_%s_%s' "$(stack_tag)" "$1"; } # unit

unit_ports_csv() { # unit -> its ports, comma-separated (an nft set)
    kafka_unit "$1"
    printf '%s' "$K_PORT,$K_CONTROLLER_PORT${K_SASL_SSL_PORT:+,$K_SASL_SSL_PORT}${K_SSL_PORT:+,$K_SSL_PORT}"
}

is_cut() { command -v nft >/dev/null 2>&1 && nft list table inet "$(nft_table "$1")" >/dev/null 2>&1; }

cmd_cut() { # unit all|peers
    local unit=$1 mode=$2 pid path rules peer peer_path own others=""
    ((EUID == 0)) || die "cut needs root: it adds nftables rules."
    command -v nft >/dev/null 2>&1 || die "cut needs nftables ('apt-get install nftables'): nft was not found."
    pid=$(our_pid "$unit")
    [[ -n $pid ]] || die "$(label "$unit") is not running."
    grep -q "^0::/activity-stack-$(stack_tag)/$unit\$" "/proc/$pid/cgroup" 2>/dev/null ||
        die "$(label "$unit") (pid $pid) was not started in its own cgroup (cgroup v2 not writable when it started?), so its packets cannot be told apart; restart it with 'down' and 'up'."
    path=$(nft_cgroup_path "$unit")
    if [[ $mode == all ]]; then
        rules="chain output { type filter hook output priority -10; policy accept; socket cgroupv2 level 2 \"$path\" counter drop; }
  chain input { type filter hook input priority -10; policy accept; socket cgroupv2 level 2 \"$path\" counter drop; }"
    else
        ((KAFKA_BROKERS > 1)) || die "cut ... peers needs a cluster: a single broker has no peers."
        own=$(unit_ports_csv "$unit")
        local out="" in=""
        while read -r peer; do
            [[ $peer == "$unit" ]] && continue
            others+="${others:+,}$(unit_ports_csv "$peer")"
            peer_path=$(nft_cgroup_path "$peer")
            out+=" socket cgroupv2 level 2 \"$peer_path\" tcp dport { $own } counter drop;"
            in+=" socket cgroupv2 level 2 \"$peer_path\" tcp sport { $own } counter drop;"
        done <<<"$(kafka_units)"
        rules="chain output { type filter hook output priority -10; policy accept; socket cgroupv2 level 2 \"$path\" tcp dport { $others } counter drop;$out }
  chain input { type filter hook input priority -10; policy accept; socket cgroupv2 level 2 \"$path\" tcp sport { $others } counter drop;$in }"
    fi
    nft delete table inet "$(nft_table "$unit")" 2>/dev/null || true
    if ! printf 'table inet %s {\n  %s\n}\n' "$(nft_table "$unit")" "$rules" | nft -f -; then
        die "nft refused the rules that cut $(label "$unit") (see above)."
    fi
    if [[ $mode == all ]]; then
        say "$(label "$unit"): cut off the network (every packet it sends or receives is dropped); 'bash scripts/stack.sh heal $(label "$unit")' heals"
    else
        say "$(label "$unit"): cut off from the other nodes (clients still reach it); 'bash scripts/stack.sh heal $(label "$unit")' heals"
    fi
}

cmd_heal() { # [unit]: none heals every cut of this stack
    command -v nft >/dev/null 2>&1 || return 0
    local table
    if [[ -n ${1:-} ]]; then
        if nft delete table inet "$(nft_table "$1")" 2>/dev/null; then say "$(label "$1"): healed"; else say "$(label "$1"): was not cut"; fi
        return 0
    fi
    while read -r table; do
        [[ -n $table ]] || continue
        nft delete table inet "$table" && say "removed the cut $table"
    done <<<"$(nft list tables 2>/dev/null | awk -v p="activity_stack_$(stack_tag)_" '$2 == "inet" && index($3, p) == 1 { print $3 }')"
}

remove_cgroups() { # once the stack is down: its empty cgroups go
    local root dir
    root=$(cgroup2_root)
    [[ -n $root ]] || return 0
    dir=$root/activity-stack-$(stack_tag)
    [[ -d $dir ]] || return 0
    rmdir "$dir"/* "$dir" 2>/dev/null || true
}

# --- FerretDB ----------------------------------------------------------------------------------------------

# STACK_FERRETDB_BACKEND, else the backend recorded at the last start, else sqlite: into FERRETDB_BACKEND.
resolve_ferretdb_backend() {
    local recorded=""
    [[ -s $MONGO_BACKEND_FILE ]] && recorded=$(<"$MONGO_BACKEND_FILE")
    FERRETDB_BACKEND=${STACK_FERRETDB_BACKEND:-${recorded:-sqlite}}
    [[ $FERRETDB_BACKEND == sqlite || $FERRETDB_BACKEND == postgresql ]] ||
        die "STACK_FERRETDB_BACKEND=$FERRETDB_BACKEND: expected sqlite or postgresql."
}

running_ferretdb_backend() { # pid -> the backend that FerretDB process was started on
    if [[ $(pid_cmdline "$1") == *--handler=postgresql* ]]; then printf 'postgresql'; else printf 'sqlite'; fi
}

ferretdb_backend_label() { # backend -> how status and messages name where the data is
    if [[ $1 == postgresql ]]; then
        printf 'on PostgreSQL, database %s' "$FERRETDB_PG_DATABASE"
    else
        printf 'on SQLite, %s' "$MONGO_DATA"
    fi
}

# The postgresql backend keeps FerretDB's data in a database of the stack's PostgreSQL, owned by the
# application role (which may create databases), made on first use.
ensure_ferretdb_database() {
    probe postgres ||
        die "FerretDB on PostgreSQL keeps its data in the stack's PostgreSQL, which does not answer on $HOST:$POSTGRES_PORT: start it first ('bash scripts/stack.sh up postgres')."
    python3 "$PROBE" postgres "$HOST:$POSTGRES_PORT" --timeout 2 --user "$POSTGRES_ROLE" \
        --database "$FERRETDB_PG_DATABASE" && return 0
    ensure_postgres
    local out
    out=$("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_ROLE" \
        -d "$POSTGRES_DB" -c "CREATE DATABASE $FERRETDB_PG_DATABASE" 2>&1) ||
        die "could not create the database $FERRETDB_PG_DATABASE for FerretDB on PostgreSQL: $out"
    say "mongo: created the database $FERRETDB_PG_DATABASE on the stack's PostgreSQL for FerretDB's data"
}

start_mongo() {
    ensure_ferretdb
    local -a backend
    if [[ $FERRETDB_BACKEND == postgresql ]]; then
        ensure_ferretdb_database
        backend=(--handler=postgresql
            "--postgresql-url=postgres://$POSTGRES_ROLE@$HOST:$POSTGRES_PORT/$FERRETDB_PG_DATABASE")
    else
        mkdir -p "$MONGO_DATA"
        backend=(--handler=sqlite "--sqlite-url=file:$MONGO_DATA/")
    fi
    mkdir -p "$MONGO_STATE"
    printf '\n===== %s starting FerretDB %s %s =====\n' "$(date '+%F %T')" "$FERRETDB_VERSION" \
        "$(ferretdb_backend_label "$FERRETDB_BACKEND")" >>"$MONGO_LOG"
    spawn "$MONGO_PIDFILE" "$MONGO_LOG" \
        "$FERRETDB_BIN" "${backend[@]}" \
        --listen-addr="$HOST:$MONGO_PORT" --state-dir="$MONGO_STATE" \
        --telemetry=disable --debug-addr=- --log-level=error
    printf '%s\n' "$FERRETDB_BACKEND" >"$MONGO_BACKEND_FILE"
    say "mongo: started FerretDB $(ferretdb_backend_label "$FERRETDB_BACKEND") (pid $(<"$MONGO_PIDFILE")), log $MONGO_LOG"
}

# --- PostgreSQL --------------------------------------------------------------------------------------------

postgres_major_of() { # bindir -> the major version its postgres reports ("15"), empty when it cannot tell
    local out re='\(PostgreSQL\) ([0-9]+)'
    out=$("$1/postgres" --version 2>/dev/null) || return 0
    if [[ $out =~ $re ]]; then printf '%s' "${BASH_REMATCH[1]}"; fi
}

# The PostgreSQL 15 binaries, into PG_BIN: POSTGRES_BINDIR, else Debian's versioned directory, else
# `pg_config --bindir`, else the postgres on PATH, else Homebrew's postgresql@15.
find_postgres() {
    local dir
    local -a candidates=("/usr/lib/postgresql/$POSTGRES_MAJOR/bin")
    if [[ -n ${POSTGRES_BINDIR:-} ]]; then
        [[ -x $POSTGRES_BINDIR/postgres && -x $POSTGRES_BINDIR/initdb ]] ||
            die "POSTGRES_BINDIR=$POSTGRES_BINDIR has no postgres and initdb executables."
        [[ $(postgres_major_of "$POSTGRES_BINDIR") == "$POSTGRES_MAJOR" ]] ||
            die "POSTGRES_BINDIR=$POSTGRES_BINDIR holds PostgreSQL '$(postgres_major_of "$POSTGRES_BINDIR")', not $POSTGRES_MAJOR."
        PG_BIN=$POSTGRES_BINDIR
        return 0
    fi
    if command -v pg_config >/dev/null 2>&1; then candidates+=("$(pg_config --bindir 2>/dev/null || true)"); fi
    if command -v postgres >/dev/null 2>&1; then candidates+=("$(dirname "$(command -v postgres)")"); fi
    candidates+=("/opt/homebrew/opt/postgresql@$POSTGRES_MAJOR/bin" "/usr/local/opt/postgresql@$POSTGRES_MAJOR/bin")
    for dir in "${candidates[@]}"; do
        [[ -n $dir && -x $dir/postgres && -x $dir/initdb ]] || continue
        [[ $(postgres_major_of "$dir") == "$POSTGRES_MAJOR" ]] || continue
        PG_BIN=$dir
        return 0
    done
    return 1
}

debian_clusters() { # -> "version name port status" per Debian-managed cluster (none without postgresql-common)
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters -h 2>/dev/null | awk '{ print $1, $2, $3, $4 }' || true
}

# Debian's postgresql-15 creates a "main" cluster on 5432 and starts it. The stack runs its own server from
# STACK_DIR, so the install runs behind a policy-rc.d that forbids starting services, and any cluster the
# install created is stopped (if it started anyway) and set to start manually. Clusters that were there
# before are left alone.
install_postgres() {
    command -v apt-get >/dev/null 2>&1 && ((EUID == 0)) || return 1
    local policy=/usr/sbin/policy-rc.d backup="" before out
    before=$(debian_clusters)
    say "postgres: installing postgresql-$POSTGRES_MAJOR with apt-get (first run only)..."
    if [[ -e $policy ]]; then
        backup=$(mktemp)
        cp -p "$policy" "$backup"
    fi
    # shellcheck disable=SC2064 # expand now
    trap "if [[ -n '$backup' ]]; then mv -f '$backup' '$policy'; else rm -f '$policy'; fi" EXIT
    printf '#!/bin/sh\n# Written by activity-service scripts/stack.sh while it installs PostgreSQL; removed after.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    if ! out=$(export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends "postgresql-$POSTGRES_MAJOR" 2>&1); then
        printf '%s\n' "$out" >&2
        die "apt-get could not install postgresql-$POSTGRES_MAJOR (output above)."
    fi
    if [[ -n $backup ]]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
    trap - EXIT
    stop_new_clusters "$before"
}

stop_new_clusters() { # clusters listed before -> each cluster not listed then: stopped, set to start manually
    local before=$1 version name port status
    while read -r version name port status; do
        [[ -n $name ]] || continue
        grep -q "^$version $name " <<<"$before" && continue
        if [[ $status == online* ]]; then pg_ctlcluster "$version" "$name" stop || true; fi
        if [[ -f /etc/postgresql/$version/$name/start.conf ]]; then echo manual >"/etc/postgresql/$version/$name/start.conf"; fi
        say "postgres: the install created Debian's cluster $version/$name (port $port); it is stopped and set to start manually (this stack runs its own server; 'pg_dropcluster $version $name' removes it)"
    done <<<"$(debian_clusters)"
}

ensure_postgres() {
    find_postgres && return 0
    if install_postgres && find_postgres; then
        say "postgres: PostgreSQL $POSTGRES_MAJOR installed in $PG_BIN"
        return 0
    fi
    die "PostgreSQL $POSTGRES_MAJOR (its postgres and initdb) is required and was not found. Install it, e.g. 'apt-get install postgresql-$POSTGRES_MAJOR' (Debian/Ubuntu; run this script as root and it does so itself), 'brew install postgresql@$POSTGRES_MAJOR' (macOS), or set POSTGRES_BINDIR."
}

# PostgreSQL refuses to run as root: as root the server (and initdb) run as the postgres system user,
# through setpriv, which execs (runuser and su fork, so the recorded pid would not be the server's).
# Otherwise, as the current user.
pg_as_owner_cmd() { # -> PG_AS, the prefix that runs a command as the server's owner
    PG_AS=()
    ((EUID == 0)) || return 0
    id -u "$POSTGRES_OS_USER" >/dev/null 2>&1 ||
        die "running as root, PostgreSQL must run as the '$POSTGRES_OS_USER' system user, which does not exist (Debian's postgresql-common creates it; or: useradd --system --home-dir /var/lib/postgresql $POSTGRES_OS_USER)."
    command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) is required to run PostgreSQL as '$POSTGRES_OS_USER' when running as root."
    PG_AS=(setpriv "--reuid=$POSTGRES_OS_USER" "--regid=$POSTGRES_OS_USER" --init-groups --)
}

pg_own() { # dir... -> owned by the server's user, mode 700 (the server insists on it for its data)
    chmod 700 "$@"
    if ((EUID == 0)); then chown "$POSTGRES_OS_USER:" "$@"; fi
}

# As root, STACK_DIR usually sits under /root (mode 700), which the postgres user cannot reach. Each
# directory above the state dir that it cannot traverse gets traverse permission for that user only
# (setfacl), else for everyone (chmod o+x: enter, not list). Said once: a granted directory passes after.
grant_postgres_traverse() {
    ((EUID == 0)) || return 0
    local dir=$POSTGRES_STATE how
    local -a dirs=()
    while [[ $dir != / && -n $dir ]]; do
        dirs=("$dir" "${dirs[@]}")
        dir=$(dirname "$dir")
    done
    for dir in "${dirs[@]}"; do
        "${PG_AS[@]}" test -x "$dir" && continue
        if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:$POSTGRES_OS_USER:x" "$dir" 2>/dev/null; then
            how="setfacl -m u:$POSTGRES_OS_USER:x"
        else
            chmod o+x "$dir"
            how="chmod o+x"
        fi
        say "postgres: the server runs as '$POSTGRES_OS_USER', which could not enter $dir: granted traverse ($how)"
    done
}

# initdb once, into a scratch directory that becomes the data directory only once the role and database
# exist: an interrupted first run leaves nothing half-made behind. The role and database are created in
# single-user mode, before the server ever listens.
init_postgres_data() {
    if [[ -f $POSTGRES_DATA/PG_VERSION ]]; then
        local made
        made=$(<"$POSTGRES_DATA/PG_VERSION")
        [[ $made == "$POSTGRES_MAJOR" ]] ||
            die "$POSTGRES_DATA was made by PostgreSQL $made, but the binaries in $PG_BIN are $POSTGRES_MAJOR. Remove $POSTGRES_STATE (its data is lost) and run up again."
        return 0
    fi
    local scratch=$POSTGRES_STATE/data.init out
    say "postgres: creating the cluster in $POSTGRES_DATA (first run only)"
    rm -rf "$scratch"
    mkdir -p "$scratch"
    pg_own "$scratch"
    # C collation: text compares byte by byte, as MongoDB compares strings (ids order alike in both stores).
    if ! out=$(cd / && "${PG_AS[@]}" "$PG_BIN/initdb" -D "$scratch" -U "$POSTGRES_SUPERUSER" --auth=trust \
        --encoding=UTF8 --locale=C 2>&1); then
        printf '%s\n' "$out" >>"$POSTGRES_LOG"
        show_log_tail "$POSTGRES_LOG"
        die "initdb failed (see above)."
    fi
    printf '%s\n' "$out" >>"$POSTGRES_LOG"
    # Single-user mode runs one statement per line and exits 0 even when one fails: the output says.
    out=$(printf '%s\n' "CREATE ROLE $POSTGRES_ROLE LOGIN CREATEDB;" \
        "CREATE DATABASE $POSTGRES_DB OWNER $POSTGRES_ROLE;" |
        (cd / && "${PG_AS[@]}" "$PG_BIN/postgres" --single -D "$scratch" postgres) 2>&1) || true
    printf '%s\n' "$out" >>"$POSTGRES_LOG"
    if [[ $out == *ERROR:* || $out == *FATAL:* ]]; then
        show_log_tail "$POSTGRES_LOG"
        die "creating the role $POSTGRES_ROLE and database $POSTGRES_DB failed (see above)."
    fi
    mv "$scratch" "$POSTGRES_DATA"
}

conf_quote() { printf "'%s'" "${1//\'/\'\'}"; } # a postgresql.conf string value

write_postgres_config() {
    cat >"$POSTGRES_CONFIG" <<EOF
# Generated by scripts/stack.sh on every start; edit the script, not this file. The server starts with
# config_file pointing here; $POSTGRES_DATA/postgresql.conf (initdb's) is not read.
data_directory = $(conf_quote "$POSTGRES_DATA")
hba_file = $(conf_quote "$POSTGRES_HBA")
ident_file = $(conf_quote "$POSTGRES_DATA/pg_ident.conf")

# Loopback only; the Unix socket lives in the state dir, in a directory only the server's user can enter.
listen_addresses = '$HOST'
port = $POSTGRES_PORT
unix_socket_directories = $(conf_quote "$POSTGRES_SOCKET_DIR")
unix_socket_permissions = 0700
max_connections = 100

# Small machine (2 cores, shared with Kafka, FerretDB and the tests). Durability as in production: fsync and
# synchronous_commit stay on, so a killed server loses nothing it acknowledged.
shared_buffers = 128MB
effective_cache_size = 512MB
work_mem = 4MB
maintenance_work_mem = 64MB
max_wal_size = 1GB
max_worker_processes = 4
max_parallel_workers_per_gather = 0
# JIT compiling costs more than it saves on this workload's small queries.
jit = off

# Logs go to stderr, which the script appends to $POSTGRES_LOG.
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'

timezone = 'UTC'
datestyle = 'iso, mdy'
lc_messages = 'C'
lc_monetary = 'C'
lc_numeric = 'C'
lc_time = 'C'
default_text_search_config = 'pg_catalog.english'
EOF
    cat >"$POSTGRES_HBA" <<EOF
# Generated by scripts/stack.sh. A development stack: no passwords.
# - The Unix socket (its directory is mode 700, only the server's user and root enter it) trusts every role,
#   the superuser $POSTGRES_SUPERUSER included: psql -h $POSTGRES_SOCKET_DIR -p $POSTGRES_PORT -U $POSTGRES_SUPERUSER postgres
# - TCP on 127.0.0.1 trusts the application role $POSTGRES_ROLE only: any local user of this machine can
#   connect as it (acceptable on a development machine, never in production). Other roles are refused.
# TYPE  DATABASE  USER                  ADDRESS        METHOD
local   all       all                                  trust
host    all       $POSTGRES_ROLE        $HOST/32   trust
EOF
    chmod 644 "$POSTGRES_CONFIG" "$POSTGRES_HBA"
}

start_postgres() {
    ensure_postgres
    pg_as_owner_cmd
    mkdir -p "$POSTGRES_STATE"
    grant_postgres_traverse
    init_postgres_data
    mkdir -p "$POSTGRES_SOCKET_DIR"
    pg_own "$POSTGRES_SOCKET_DIR"
    write_postgres_config
    printf '\n===== %s starting PostgreSQL %s =====\n' "$(date '+%F %T')" "$POSTGRES_MAJOR" >>"$POSTGRES_LOG"
    spawn "$POSTGRES_PIDFILE" "$POSTGRES_LOG" "${PG_AS[@]}" "$PG_BIN/postgres" -D "$POSTGRES_DATA" \
        -c "config_file=$POSTGRES_CONFIG"
    say "postgres: started PostgreSQL $POSTGRES_MAJOR (pid $(<"$POSTGRES_PIDFILE")${PG_AS[*]:+, as $POSTGRES_OS_USER}), log $POSTGRES_LOG"
}

# --- up / down / kill / status -----------------------------------------------------------------------------
#
# A unit is what one process serves: kafka (the single broker) or kafka1, kafka2... (the nodes of a cluster),
# mongo, postgres.

service_port() {
    case $1 in
    kafka*) kafka_unit "$1" && printf '%s' "$K_PORT" ;;
    mongo) printf '%s' "$MONGO_PORT" ;;
    postgres) printf '%s' "$POSTGRES_PORT" ;;
    esac
}

service_ports() { # every port it listens on
    case $1 in
    kafka*) unit_ports_csv "$1" | tr ',' '\n' ;;
    *) service_port "$1" ;;
    esac
}

service_port_variable() {
    case $1 in
    kafka) printf 'KAFKA_PORT' ;;
    kafka*) printf 'KAFKA_PORT (node N listens on KAFKA_PORT + %s*(N-1))' "$KAFKA_NODE_PORT_STEP" ;;
    mongo) printf 'MONGO_PORT' ;;
    postgres) printf 'POSTGRES_PORT' ;;
    esac
}

service_state() { # its directory under STACK_DIR
    case $1 in
    kafka*) kafka_unit "$1" && printf '%s' "$K_STATE" ;;
    mongo) printf '%s' "$MONGO_STATE" ;;
    postgres) printf '%s' "$POSTGRES_STATE" ;;
    esac
}

service_pidfile() {
    case $1 in
    kafka*) kafka_unit "$1" && printf '%s' "$K_PIDFILE" ;;
    mongo) printf '%s' "$MONGO_PIDFILE" ;;
    postgres) printf '%s' "$POSTGRES_PIDFILE" ;;
    esac
}

service_log() { # the main log
    case $1 in
    kafka*) kafka_unit "$1" && printf '%s' "$K_LOG" ;;
    mongo) printf '%s' "$MONGO_LOG" ;;
    postgres) printf '%s' "$POSTGRES_LOG" ;;
    esac
}

service_logs() { # every log worth showing when it fails
    case $1 in
    kafka*) kafka_unit "$1" && printf '%s\n' "$K_LOG" "$K_STDOUT" ;;
    mongo) printf '%s\n' "$MONGO_LOG" ;;
    postgres) printf '%s\n' "$POSTGRES_LOG" ;;
    esac
}

service_settings() { # service (kafka, mongo, postgres) -> the lines `up` prints for it
    case $1 in
    kafka)
        printf 'KAFKA_BOOTSTRAP_SERVERS=%s\n' "$(kafka_bootstrap)"
        if ((KAFKA_BROKERS > 1)); then
            kafka_replication
            printf 'KAFKA_REPLICATION_FACTOR=%s\nKAFKA_MIN_INSYNC_REPLICAS=%s\n' "$K_RF" "$K_MIN_ISR"
        fi
        ;;
    mongo) printf 'MONGODB_URI=mongodb://%s:%s\n' "$HOST" "$MONGO_PORT" ;;
    postgres) printf 'POSTGRES_DSN=postgresql://%s@%s:%s/%s\n' "$POSTGRES_ROLE" "$HOST" "$POSTGRES_PORT" "$POSTGRES_DB" ;;
    esac
}

probe() { # unit -> 0 when it answers its protocol (PostgreSQL: as the application role, to its database; a
    # cluster node: once it is registered and unfenced, i.e. listed in its own metadata)
    local -a node=()
    [[ $1 == kafka[0-9]* ]] && node=(--node-id "${1#kafka}")
    python3 "$PROBE" "${1%%[0-9]*}" "$HOST:$(service_port "$1")" --timeout 2 "${node[@]}"
}

probe_reason() { # unit -> why the probe fails, in the probe's words
    local -a node=()
    [[ $1 == kafka[0-9]* ]] && node=(--node-id "${1#kafka}")
    python3 "$PROBE" "${1%%[0-9]*}" "$HOST:$(service_port "$1")" --timeout 2 --verbose "${node[@]}" 2>&1 >/dev/null |
        sed 's/^[^ ]* [^ ]*: //'
}

foreign_hint() { # unit port -> advice when a process this script did not start holds the port
    [[ $1 == postgres ]] || return 0
    local version name port status
    while read -r version name port status; do
        [[ $port == "$2" && $status == online* ]] || continue
        printf " It is Debian's PostgreSQL cluster %s/%s: stop it ('pg_ctlcluster %s %s stop', and 'manual' in /etc/postgresql/%s/%s/start.conf keeps it from starting at boot)." \
            "$version" "$name" "$version" "$name" "$version" "$name"
    done <<<"$(debian_clusters)"
}

# Waits until the unit answers its protocol. $2 is the pid to watch ("" for a process that is not ours).
wait_ready() { # unit pid timeout
    local service=$1 pid=$2 timeout=$3 start logs
    start=$(date +%s)
    while ! probe "$service"; do
        if [[ -n $pid ]] && ! alive "$pid"; then
            mapfile -t logs < <(service_logs "$service")
            show_log_tail "${logs[@]}"
            rm -f "$(service_pidfile "$service")"
            die "$(label "$service") exited while starting (pid $pid); its log is above. Fix the cause and run 'bash scripts/stack.sh up $(label "$service")' again."
        fi
        if (($(date +%s) - start >= timeout)); then
            if [[ -n $pid ]]; then
                mapfile -t logs < <(service_logs "$service")
                show_log_tail "${logs[@]}"
                local quorum=""
                [[ $service == kafka[0-9]* ]] && quorum=" A node of a cluster answers only once a majority of the nodes ($((KAFKA_BROKERS / 2 + 1)) of $KAFKA_BROKERS) run: start the others too ('bash scripts/stack.sh up kafka')."
                die "$(label "$service") did not answer on $HOST:$(service_port "$service") within ${timeout}s (pid $pid still running; log above; last answer: $(probe_reason "$service")).$quorum Try 'bash scripts/stack.sh down $(label "$service") && bash scripts/stack.sh up $(label "$service")'; if it keeps failing, remove $(service_state "$service") (its data is lost) and run up again."
            fi
            local holder
            holder=$(port_holder "$(service_port "$service")")
            die "$HOST:$(service_port "$service") is taken by a process this script did not start${holder:+ ($holder)}, and it does not answer as this stack's $(label "$service") ($(probe_reason "$service")).$(foreign_hint "$service" "$(service_port "$service")") Stop it, or use another port ($(service_port_variable "$service")=...)."
        fi
        sleep 0.5
    done
}

# Starts the unit when it is not running; the waiting is done after every unit was started, since the nodes
# of a cluster answer only once a majority of them runs. Sets RESULT[unit] and, for a process to wait for,
# WAIT[unit] (its pid).
up_service() { # unit
    local service=$1 port pid
    port=$(service_port "$service")
    pid=$(our_pid "$service")
    if [[ -n $pid && $service == mongo && $(running_ferretdb_backend "$pid") != "$FERRETDB_BACKEND" ]]; then
        die "mongo: FerretDB runs $(ferretdb_backend_label "$(running_ferretdb_backend "$pid")") (pid $pid), not on $FERRETDB_BACKEND as STACK_FERRETDB_BACKEND asks: stop it first ('bash scripts/stack.sh down mongo'; its data is kept)."
    fi
    if [[ -n $pid ]]; then
        RESULT[$service]=reused
        if probe "$service"; then
            say "$(label "$service"): already running (pid $pid) on $HOST:$port"
        else
            say "$(label "$service"): process $pid is up but not answering yet; waiting..."
            WAIT[$service]=$pid
        fi
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
    if [[ $service == kafka* ]]; then
        kafka_unit "$service"
        local other
        for other in "$K_CONTROLLER_PORT" $K_SASL_SSL_PORT $K_SSL_PORT; do
            ! port_answers "$other" ||
                die "port $HOST:$other of $(label "$service") is taken by another process ($(port_holder "$other")). Stop it or choose other ports (KAFKA_CONTROLLER_PORT, STACK_KAFKA_SASL_SSL_PORT, STACK_KAFKA_SSL_PORT)."
        done
    fi
    "start_${service%%[0-9]*}" "$service"
    # The pid just recorded, not our_pid: a server that already crashed must be reported as a crash.
    WAIT[$service]=$(<"$(service_pidfile "$service")")
    RESULT[$service]=started
}

cmd_up() {
    local start service
    start=$(now)
    need_python
    mkdir -p "$STACK_DIR"
    lock_stack
    declare -gA RESULT=() WAIT=()
    if [[ " ${SERVICES[*]} " == *" kafka"* ]]; then check_kafka_layout; fi
    for service in "${SERVICES[@]}"; do
        # FerretDB on PostgreSQL needs its database before it starts: PostgreSQL first, and ready.
        if [[ $service == mongo && $FERRETDB_BACKEND == postgresql && -n ${WAIT[postgres]:-} ]]; then
            wait_ready postgres "${WAIT[postgres]}" "$WAIT_TIMEOUT"
            unset 'WAIT[postgres]'
        fi
        up_service "$service"
    done
    for service in "${SERVICES[@]}"; do
        [[ -n ${WAIT[$service]:-} ]] && wait_ready "$service" "${WAIT[$service]}" "$WAIT_TIMEOUT"
    done
    if [[ " ${SERVICES[*]} " == *" kafka"* ]]; then ensure_scram_users; fi
    local summary=""
    for service in "${SERVICES[@]}"; do summary+="${summary:+, }$(label "$service") ${RESULT[$service]}"; done
    say "ready in $(elapsed_since "$start") ($summary; state in $STACK_DIR)"
    if [[ " ${SERVICES[*]} " == *" kafka"* ]]; then
        kafka_unit "$(kafka_units | head -n 1)"
        local nodes=""
        ((KAFKA_BROKERS == 1)) || nodes=" (node N: + $KAFKA_NODE_PORT_STEP*(N-1))"
        [[ -z $K_SASL_SSL_PORT ]] || say "kafka: SASL_SSL listener on $HOST:$K_SASL_SSL_PORT$nodes"
        [[ -z $K_SSL_PORT ]] || say "kafka: SSL listener (client certificates required) on $HOST:$K_SSL_PORT$nodes"
    fi
    for service in kafka mongo postgres; do
        [[ " ${SERVICES[*]} " == *" $service"* ]] && service_settings "$service"
    done
    return 0
}

# The process and, for PostgreSQL, its children (each backend and worker is a child of the postmaster, in a
# session of its own). The parent is stopped (SIGSTOP) first so that it forks nothing new while they are
# listed, then all get SIGKILL at once: what a crash of the whole server looks like. Returns once none is
# alive; PostgreSQL's next start recovers from its write-ahead log.
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
    # A killed postmaster leaves postmaster.pid behind, and the next start refuses while that pid exists,
    # even as a zombie (kill -0 succeeds): wait until its parent (init, once this script's caller is gone)
    # has reaped it. Some container inits reap only every few seconds.
    [[ $service == postgres ]] || return 0
    waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= 100)); then
            warn "$service: the killed pid $pid is still not reaped after 10 s; the next start may refuse its postmaster.pid"
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# PostgreSQL gets SIGINT, its "fast" shutdown (clients disconnected, a checkpoint written): its SIGTERM
# ("smart") would wait for every client, and the tests' connection pools may hold connections.
stop_signal() {
    case $1 in
    postgres) printf 'INT' ;;
    *) printf 'TERM' ;;
    esac
}

stop_pid() { # service pid
    local service=$1 pid=$2 waited=0
    kill -"$(stop_signal "$service")" "$pid" 2>/dev/null || return 0
    while alive "$pid"; do
        if ((waited >= STOP_TIMEOUT * 10)); then
            warn "$(label "$service") (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
            kill_tree "$service" "$pid"
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

wait_ports_free() { # unit -> 0 when its ports are free
    local service=$1 port holder rc=0
    while read -r port; do
        [[ -n $port ]] || continue
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

down_service() { # unit -> 0 when its ports are free afterwards
    local service=$1 pid pidfile start
    start=$(now)
    pidfile=$(service_pidfile "$service")
    pid=$(our_pid "$service")
    if [[ -n $pid ]]; then
        stop_pid "$service" "$pid"
        say "$(label "$service"): stopped (pid $pid) in $(elapsed_since "$start")"
    else
        say "$(label "$service"): not running (no live process recorded in $pidfile)"
    fi
    rm -f "$pidfile"
    wait_ports_free "$service"
}

kill_service() { # unit -> 0 when its ports are free afterwards
    local service=$1 pid pidfile
    pidfile=$(service_pidfile "$service")
    pid=$(our_pid "$service")
    if [[ -n $pid ]]; then
        kill_tree "$service" "$pid"
        say "$(label "$service"): killed (SIGKILL, pid $pid); its data is kept: 'bash scripts/stack.sh up $(label "$service")' starts it again"
    else
        say "$(label "$service"): not running (no live process recorded in $pidfile)"
    fi
    rm -f "$pidfile"
    wait_ports_free "$service"
}

# The nodes of a cluster get their SIGTERM together: stopped one by one, each would first hand its partitions
# to the others (controlled shutdown) only for the next to do the same, and the last would wait for a quorum
# that is gone.
down_cluster() { # units... -> 0 when their ports are free afterwards
    local service pid start rc=0
    local -A pids=()
    start=$(now)
    for service in "$@"; do
        pid=$(our_pid "$service")
        if [[ -n $pid ]]; then
            pids[$service]=$pid
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for service in "$@"; do
        if [[ -n ${pids[$service]:-} ]]; then
            stop_pid "$service" "${pids[$service]}"
            say "$(label "$service"): stopped (pid ${pids[$service]}) in $(elapsed_since "$start")"
        else
            say "$(label "$service"): not running (no live process recorded in $(service_pidfile "$service"))"
        fi
        rm -f "$(service_pidfile "$service")"
        wait_ports_free "$service" || rc=1
    done
    return "$rc"
}

cmd_down() { # down | kill
    mkdir -p "$STACK_DIR"
    lock_stack
    local rc=0 service
    local -a nodes=()
    for service in "${SERVICES[@]}"; do
        if [[ $1 == down && $service == kafka[0-9]* ]]; then nodes+=("$service"); fi
    done
    if ((${#nodes[@]} > 1)); then down_cluster "${nodes[@]}" || rc=1; fi
    local ferretdb
    ferretdb=$(our_pid mongo)
    if [[ " ${SERVICES[*]} " == *" postgres "* && " ${SERVICES[*]} " != *" mongo "* && -n $ferretdb &&
        $(running_ferretdb_backend "$ferretdb") == postgresql ]]; then
        say "note: mongo (FerretDB on PostgreSQL, pid $ferretdb) keeps running but cannot read or write until postgres is up again"
    fi
    for service in "${SERVICES[@]}"; do
        ((${#nodes[@]} > 1)) && [[ $service == kafka[0-9]* ]] && continue
        "$1_service" "$service" || rc=1
    done
    if ((WHOLE_STACK)); then # nothing of this stack runs any more: no cut can be meant to last
        cmd_heal
        remove_cgroups
    fi
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
        if [[ $service == kafka* ]]; then
            kafka_unit "$service"
            extra=" (controller $HOST:$K_CONTROLLER_PORT${K_SASL_SSL_PORT:+, SASL_SSL $K_SASL_SSL_PORT}${K_SSL_PORT:+, SSL $K_SSL_PORT})"
            if is_cut "$service"; then extra+=" CUT"; fi
        fi
        if [[ $service == mongo ]]; then
            if [[ -n $pid ]]; then
                extra=" ($(ferretdb_backend_label "$(running_ferretdb_backend "$pid")"))"
            else
                extra=" (up: $(ferretdb_backend_label "$FERRETDB_BACKEND"))"
            fi
        fi
        if [[ -n $pid ]]; then
            if probe "$service"; then state="running, ready"; else state="running, not answering yet"; fi
            printf '  %-8s %-28s pid %-8s %s:%s%s  log %s\n' "$(label "$service")" "$state" "$pid" "$HOST" "$port" \
                "$extra" "$(service_log "$service")"
        elif port_answers "$port"; then
            holder=$(port_holder "$port")
            printf '  %-8s %-28s %s:%s is served by a process this script did not start%s\n' "$(label "$service")" \
                "foreign" "$HOST" "$port" "${holder:+ ($holder)}"
        else
            printf '  %-8s %-28s %s:%s%s\n' "$(label "$service")" "stopped" "$HOST" "$port" "$extra"
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
    [[ $# -ge 1 && $# -le 4 ]] || usage
    local action=$1 service=${2:-all} node=${3:-} mode=${4:-all} unit
    [[ $node =~ ^[0-9]*$ ]] || usage
    [[ -z $node || $service == kafka ]] || usage
    resolve_kafka_brokers "$node"
    local -a kafka=()
    mapfile -t kafka < <(kafka_units)
    if [[ -n $node ]]; then
        if ((KAFKA_BROKERS == 1)); then
            ((node == 1)) || die "kafka $node: this stack has a single Kafka broker (a cluster is STACK_KAFKA_BROKERS=3)."
            kafka=(kafka)
        else
            ((node >= 1 && node <= KAFKA_BROKERS)) || die "kafka $node: the cluster has nodes 1 to $KAFKA_BROKERS."
            kafka=("kafka$node")
        fi
    fi
    WHOLE_STACK=0
    case $service in
    all)
        SERVICES=("${kafka[@]}" mongo postgres)
        WHOLE_STACK=1
        ;;
    kafka) SERVICES=("${kafka[@]}") ;;
    mongo | ferretdb) SERVICES=(mongo) ;;
    postgres | postgresql | pg) SERVICES=(postgres) ;;
    *) usage ;;
    esac
    resolve_ferretdb_backend
    case $action in
    up)
        if [[ $FERRETDB_BACKEND == postgresql && " ${SERVICES[*]} " == *" mongo "* ]]; then
            # FerretDB last: it keeps its data in PostgreSQL, which cmd_up waits for before starting it.
            local -a ordered=()
            for unit in "${SERVICES[@]}"; do [[ $unit == mongo ]] || ordered+=("$unit"); done
            SERVICES=("${ordered[@]}" mongo)
        fi
        cmd_up
        ;;
    down) cmd_down down ;;
    kill) cmd_down kill ;;
    status) cmd_status ;;
    cut)
        [[ $service == kafka && -n $node && ($mode == all || $mode == peers) ]] || usage
        mkdir -p "$STACK_DIR"
        lock_stack
        cmd_cut "${kafka[0]}" "$mode"
        ;;
    heal)
        [[ $service == all || $service == kafka ]] || usage
        if [[ $service == kafka ]]; then
            for unit in "${kafka[@]}"; do cmd_heal "$unit"; done
        else
            cmd_heal
        fi
        ;;
    *) usage ;;
    esac
}

main "$@"
