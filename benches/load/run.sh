#!/usr/bin/env bash
# SIPp load benchmark of knappval: N concurrent callers hear the greeting and the menu, press 3 (RFC 4733) and are
# bridged to a SIPp "IT function", talk (both ways) for a few seconds and hang up. Reports calls completed/failed,
# contact records by outcome, the daemon's CPU% and RSS, and RTP inter-arrival gaps measured on the callers' side.
#
#   benches/load/run.sh                      # N=200, then N=500
#   LOAD_CONCURRENCY="100" benches/load/run.sh
#   SCENARIO=queue benches/load/run.sh       # N=300 callers wait in the IT queue with hold music (position
#                                            # announced every 20 s) while 20 fixed-URI agents (one SIPp UAS)
#                                            # answer in turn: ring RING_MS, talk TALK_MS, hang up, 1 s wrap-up
#
# Environment: LOAD_CONCURRENCY ("200 500"), TOTAL_CALLS (3 x N), RATE (calls/s: max(50, N/5)),
# DIGIT_DELAY_MS (3500: the greeting is 2.8 s), HOLD_MS (5000: bridged time), RUN_LIMIT_S (170, per run),
# KNAPPVAL_BIN (else a release build), CARGO_TARGET_DIR, LOAD_OUT (results folder; default a new /tmp dir),
# PERF=1 (perf record the daemon during the largest run, when perf works here).
#
# Loopback only. Starts and stops only its own processes (by PID). Needs root or CAP_NET_RAW: SIPp plays
# pcaps through a raw socket and tcpdump captures on lo.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TOOL="python3 $HERE/knappbench.py"

SCENARIO=${SCENARIO:-menu}
case $SCENARIO in
    menu) CONCURRENCY=${LOAD_CONCURRENCY:-"200 500"} ;;
    queue) CONCURRENCY=${LOAD_CONCURRENCY:-300} ;;
    *) echo "SCENARIO is menu or queue" >&2; exit 2 ;;
esac
AGENTS=${AGENTS:-20}
RING_MS=${RING_MS:-1000}
TALK_MS=${TALK_MS:-3000}
DIGIT_DELAY_MS=${DIGIT_DELAY_MS:-3500}
HOLD_MS=${HOLD_MS:-5000}
RUN_LIMIT_S=${RUN_LIMIT_S:-170}
OUT=${LOAD_OUT:-$(mktemp -d /tmp/knappval-load.XXXXXX)}
mkdir -p "$OUT"
# The daemon's RTP ports, and the SIPp peers' per-call media ports ([auto_media_port] = base + 4 * (call - 1)).
DAEMON_RTP=20000-39999
CALLER_MEDIA=40000
FUNCTION_MEDIA=50000

log() { printf '[load %s] %s\n' "$(date +%T)" "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------------------------
need_apt=()
command -v sipp >/dev/null || need_apt+=(sip-tester)
command -v tcpdump >/dev/null || need_apt+=(tcpdump)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]}"
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v python3 >/dev/null || { log "python3 is required"; exit 1; }

if [[ -z ${KNAPPVAL_BIN:-} ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
    log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --quiet)
    KNAPPVAL_BIN=$CARGO_TARGET_DIR/release/knappval
fi
[[ -x $KNAPPVAL_BIN ]] || { log "no daemon binary at $KNAPPVAL_BIN"; exit 1; }

# --- process bookkeeping: only what this script started ----------------------------------------------------------
STARTED=()
stop_pid() { # PID SIGNAL SECONDS: signal, wait up to SECONDS, then SIGKILL
    local pid=$1 sig=$2 wait_s=$3 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid" TERM 2; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# SIP ports come from 10000-19999: the kernel's ephemeral ports overlap the RTP and media ranges above.
free_udp_port() {
    python3 -c '
import random, socket
for port in random.sample(range(10000, 20000), 200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
'
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
render() { # TEMPLATE OUT KEY=VALUE...
    local template=$1 out=$2 text
    shift 2
    text=$(<"$template")
    for kv in "$@"; do text=${text//"{{${kv%%=*}}}"/${kv#*=}}; done
    [[ $text != *"{{"* ]] || { log "unreplaced placeholder in $template"; exit 1; }
    printf '%s\n' "$text" >"$out"
}
wait_pid_bounded() { # PID SECONDS -> 0 when it exited in time
    local pid=$1 wait_s=$2 i
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# --- one run -------------------------------------------------------------------------------------------------
run_one() {
    local n=$1
    local total=${TOTAL_CALLS:-$((3 * n))}
    [[ $SCENARIO == queue ]] && total=${TOTAL_CALLS:-$n}
    local rate=${RATE:-$((n / 5 > 50 ? n / 5 : 50))}
    local dir=$OUT/n$n
    mkdir -p "$dir"
    local run_start
    run_start=$(now)
    log "N=$n: $total calls at $rate/s, at most $n at once; results in $dir"

    local hold_s=$((HOLD_MS / 1000))
    # The caller's tone ends before its BYE, the function's before knappval's BYE reaches it.
    local caller_s=$((hold_s - 1)) function_s=$((hold_s - 1))
    if [[ $SCENARIO == queue ]]; then
        # The caller keeps sending for the longest wait (or the daemon's media timeout would end the call).
        caller_s=$((RUN_LIMIT_S + 10)) function_s=$((TALK_MS / 1000))
    fi
    $TOOL gen-pcap --out "$dir/caller.pcap" --digit 3 --tone-hz 1000 --tone-s "$caller_s"
    $TOOL gen-pcap --out "$dir/function.pcap" --tone-hz 400 --tone-s "$function_s"

    local function_port caller_port daemon_port
    function_port=$(free_udp_port)
    caller_port=$(free_udp_port)
    daemon_port=$(free_udp_port)
    if [[ $SCENARIO == queue ]]; then
        local agents="" a
        for ((a = 1; a <= AGENTS; a++)); do
            agents+="${agents:+, }\"sip:agent-$(printf %02d "$a")@127.0.0.1:$function_port\""
        done
        cat >"$dir/menu.yaml" <<EOF
name: Knappval queue load bench
functions:
  it:
    name: IT Kundservice
    transfer: queue
    failure_prompt: function-busy
    queue:
      agents: [$agents]
      strategy: longest-idle
      ring_timeout: 10s
      wrap_up: 1s
      max_wait: 5m
      overflow: { hangup: true }
      music: hold-music
      announce_position: 20s
menu:
  greeting: welcome
  prompt: main-menu
  timeout: 5s
  retries: 1
  invalid: invalid-choice
  options:
    "3": { route: it }
  fallback: { hangup: true }
EOF
    else
    cat >"$dir/menu.yaml" <<EOF
name: Knappval load bench
functions:
  it:
    name: IT Kundservice
    target: "sip:it@127.0.0.1:$function_port"
    transfer: bridge
    ring_timeout: 10s
    failure_prompt: function-busy
    on_failure: { hangup: true }
menu:
  greeting: welcome
  prompt: main-menu
  timeout: 5s
  retries: 1
  invalid: invalid-choice
  options:
    "3": { route: it }
  fallback: { hangup: true }
EOF
    fi
    "$KNAPPVAL_BIN" check --menu "$dir/menu.yaml" --prompts "$REPO/prompts" >"$dir/check.out" 2>&1 \
        || { cat "$dir/check.out" >&2; return 1; }

    # The daemon: fresh database, free SIP/HTTP ports, a wide RTP range, warnings only. No OPTIONS probes: the
    # SIPp function scenario would take one as a call that does not start with INVITE and count it failed.
    (
        ulimit -n "$(ulimit -Hn)"
        exec env -u RUST_LOG KNAPPVAL_LOG=warn "$KNAPPVAL_BIN" run --menu "$dir/menu.yaml" --prompts "$REPO/prompts" \
            --sip "127.0.0.1:$daemon_port" --http 127.0.0.1:0 --db "$dir/contacts.db" --rtp-ports "$DAEMON_RTP" \
            --grace-period 5s --probe-interval 0s
    ) >"$dir/daemon.out" 2>"$dir/daemon.log" &
    local daemon=$!
    STARTED+=("$daemon")
    local i sip="" http=""
    for ((i = 0; i < 300; i++)); do
        if read -r _ _ sip http < <(grep -m1 '^knappval listening' "$dir/daemon.out" 2>/dev/null); then break; fi
        kill -0 "$daemon" 2>/dev/null || { log "daemon exited"; cat "$dir/daemon.log" >&2; return 1; }
        sleep 0.1
    done
    sip=${sip#sip=} http=${http#http=}
    [[ -n $sip && -n $http ]] || { log "daemon not ready within 30 s"; return 1; }
    log "daemon pid $daemon sip=$sip http=$http"

    local profiler=""
    if [[ -n ${PERF:-} ]] && command -v perf >/dev/null; then
        perf record -F 99 -g -p "$daemon" -o "$dir/perf.data" >"$dir/perf.out" 2>&1 &
        profiler=$!
        STARTED+=("$profiler")
    fi

    $TOOL sink --base $CALLER_MEDIA --base $FUNCTION_MEDIA --count "$total" --max-s "$((RUN_LIMIT_S + 60))" \
        >"$dir/sink.out" 2>&1 &
    local sink=$!
    STARTED+=("$sink")

    tcpdump -i lo -n -s 96 -B 131072 -w "$dir/rtp.pcap" \
        "udp and (dst portrange $CALLER_MEDIA-$((CALLER_MEDIA + 9999)) or src portrange $FUNCTION_MEDIA-$((FUNCTION_MEDIA + 9999)))" \
        2>"$dir/tcpdump.err" &
    local capture=$!
    STARTED+=("$capture")
    for ((i = 0; i < 100; i++)); do
        grep -q 'listening on' "$dir/tcpdump.err" 2>/dev/null && break
        sleep 0.1
    done
    for ((i = 0; i < 100; i++)); do
        grep -q 'ports bound' "$dir/sink.out" 2>/dev/null && break
        sleep 0.1
    done

    if [[ $SCENARIO == queue ]]; then
        render "$HERE/agent_uas.xml" "$dir/function_uas.xml" "PCAP=$dir/function.pcap" \
            "RING_MS=$RING_MS" "TALK_MS=$TALK_MS"
        render "$HERE/caller_queue_uac.xml" "$dir/caller_uac.xml" "PCAP=$dir/caller.pcap" \
            "DIGIT_DELAY_MS=$DIGIT_DELAY_MS" "WAIT_TIMEOUT_MS=$((RUN_LIMIT_S * 1000))"
    else
        render "$HERE/function_uas.xml" "$dir/function_uas.xml" "PCAP=$dir/function.pcap" \
            "BYE_TIMEOUT_MS=$((HOLD_MS + 30000))"
        render "$HERE/caller_uac.xml" "$dir/caller_uac.xml" "PCAP=$dir/caller.pcap" \
            "DIGIT_DELAY_MS=$DIGIT_DELAY_MS" "HOLD_MS=$HOLD_MS"
    fi

    (cd "$dir" && exec sipp -sf function_uas.xml -i 127.0.0.1 -p "$function_port" -mi 127.0.0.1 \
        -mp $FUNCTION_MEDIA -m "$total" -l $((2 * n)) -nostdin -trace_err -error_file function_errors.log \
        -trace_stat -stf function_stat.csv -fd 1 -trace_screen -screen_file function_screen.log \
        -timeout "${RUN_LIMIT_S}s" >function.out 2>&1) &
    local function_sipp=$!
    STARTED+=("$function_sipp")
    sleep 0.5
    kill -0 "$function_sipp" 2>/dev/null || { log "function sipp did not start"; cat "$dir/function.out" >&2; return 1; }

    local calls_start
    calls_start=$(now)
    (cd "$dir" && exec sipp "$sip" -sf caller_uac.xml -i 127.0.0.1 -p "$caller_port" -mi 127.0.0.1 \
        -mp $CALLER_MEDIA -l "$n" -r "$rate" -m "$total" -recv_timeout 30000 -nostdin -trace_err \
        -error_file caller_errors.log -trace_stat -stf caller_stat.csv -fd 1 -trace_screen \
        -screen_file caller_screen.log -timeout "${RUN_LIMIT_S}s" -timeout_error >caller.out 2>&1) &
    local caller_sipp=$!
    STARTED+=("$caller_sipp")

    $TOOL sample --out "$dir/usage.csv" --max-s "$((RUN_LIMIT_S + 30))" daemon="$daemon" \
        sipp-caller="$caller_sipp" sipp-function="$function_sipp" tcpdump="$capture" &
    local sampler=$!
    STARTED+=("$sampler")

    local caller_status=0
    wait_pid_bounded "$caller_sipp" $((RUN_LIMIT_S + 15)) || log "caller sipp overran; stopping it"
    stop_pid "$caller_sipp" INT 5
    wait "$caller_sipp" 2>/dev/null || caller_status=$?
    local calls_end
    calls_end=$(now)
    # knappval ends the function leg right after the caller's BYE: give the last BYEs a moment.
    wait_pid_bounded "$function_sipp" 15 || log "function sipp still has calls; stopping it"
    stop_pid "$function_sipp" INT 5
    stop_pid "$sampler" TERM 3
    sleep 1
    $TOOL contacts --http "$http" >"$dir/contacts.json" || echo '{}' >"$dir/contacts.json"

    if [[ -n $profiler ]]; then
        stop_pid "$profiler" INT 20
        perf report -i "$dir/perf.data" --no-children --stdio --sort dso,symbol 2>/dev/null \
            | grep -v '^#' | grep -E '^ +[0-9]' | head -40 >"$dir/perf_top.txt" || true
    fi
    local daemon_status=0 stop_start
    stop_start=$(now)
    stop_pid "$daemon" TERM 20
    wait "$daemon" 2>/dev/null || daemon_status=$?
    local shutdown_s
    shutdown_s=$(elapsed "$stop_start" "$(now)")
    stop_pid "$capture" INT 10
    stop_pid "$sink" TERM 3

    local calls_s
    calls_s=$(elapsed "$calls_start" "$calls_end")
    $TOOL sipp "$dir/caller_stat.csv" >"$dir/caller_stat.json"
    $TOOL sipp "$dir/function_stat.csv" >"$dir/function_stat.json"
    $TOOL samples "$dir/usage.csv" --active-from 2 --active-to "${calls_s%.*}" >"$dir/usage.json"
    log "analysing $(du -h "$dir/rtp.pcap" | cut -f1) of capture"
    local waiting=()
    # In the queue, the daemon's audio after the digit (and the 2.8 s greeting it cut) is the hold music.
    [[ $SCENARIO == queue ]] && waiting=(--waiting-after-ms "$((DIGIT_DELAY_MS + 500))")
    $TOOL rtp "$dir/rtp.pcap" --dst-ports $CALLER_MEDIA $((CALLER_MEDIA + 9999)) \
        --src-ports $FUNCTION_MEDIA $((FUNCTION_MEDIA + 9999)) "${waiting[@]}" >"$dir/rtp.json"
    # The daemon's warnings and errors, most frequent first, without timestamps and call ids.
    sed -E 's/^[0-9T:.Z-]+ +//; s/call_id=[^ ]+/call_id=…/g; s/[0-9a-f]{8,}/…/g' "$dir/daemon.log" \
        | sort | uniq -c | sort -rn | head -20 >"$dir/daemon_log_top.txt" || true

    local run_s
    run_s=$(elapsed "$run_start" "$(now)")
    python3 - "$dir" "$n" "$total" "$rate" "$caller_status" "$daemon_status" "$calls_s" "$run_s" "$shutdown_s" \
        >>"$OUT/summary.txt" <<'EOF'
import json, sys, os
d, n, total, rate, caller_status, daemon_status, calls_s, run_s, shutdown_s = sys.argv[1:]
load = lambda name: json.load(open(os.path.join(d, name)))
caller, function, contacts, usage, rtp = (load(f) for f in
    ("caller_stat.json", "function_stat.json", "contacts.json", "usage.json", "rtp.json"))
dmn = usage.get("daemon", {})
drops = ""
for line in open(os.path.join(d, "tcpdump.err")):
    if "dropped by kernel" in line:
        drops = line.split()[0]
def g(kind):
    s = rtp[kind]
    return (f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} / {s['max_ms']:.1f} ms, >30 ms {s['over_30ms_pct']:.3f}% "
            f"({s['gaps']} gaps)")
print(f"""
== N={n} concurrent, {total} calls at {rate}/s (results: {d})
calls (SIPp caller)     : {caller['successful']} completed, {caller['failed']} failed of {caller['created']} created; max concurrent {caller['max_concurrent']}; retransmissions {caller['retransmissions']}; sipp exit {caller_status}
function (SIPp UAS)     : {function['successful']} completed, {function['failed']} failed of {function['created']} bridged INVITEs
contact records         : {contacts.get('records')} {json.dumps(contacts.get('by_outcome'))}
queue wait (records)    : {json.dumps(contacts.get('queue_wait_ms'))}
daemon CPU (1 core=100%): avg {dmn.get('cpu_avg', float('nan')):.0f}%, max {dmn.get('cpu_max', float('nan')):.0f}%
daemon RSS              : avg {dmn.get('rss_avg_mib', float('nan')):.1f} MiB, peak {dmn.get('rss_max_mib', float('nan')):.1f} MiB
machine CPU avg (all)   : {usage.get('machine', {}).get('cpu_avg', float('nan')):.0f}% of 200%; load avg at end {open('/proc/loadavg').read().split()[0]}
load generators CPU avg : sipp caller {usage.get('sipp-caller', {}).get('cpu_avg', float('nan')):.0f}%, sipp function {usage.get('sipp-function', {}).get('cpu_avg', float('nan')):.0f}%, tcpdump {usage.get('tcpdump', {}).get('cpu_avg', float('nan')):.0f}%
RTP to callers p50/p99/max: all audio {g('to_caller_audio')}
                          prompts (daemon-paced) {g('prompt')}
                          waiting in the queue (music, announcements) {g('waiting')}
                          relayed from function {g('relayed')}
RTP function->daemon (SIPp pacing, reference): {g('source')}
capture                 : {rtp['packets']['to_caller']} pkts to callers in {rtp['streams_to_caller']} streams, {rtp['packets']['from_function']} from functions; tcpdump kernel drops {drops or '?'}
time                    : calls {calls_s} s, whole run {run_s} s, daemon SIGTERM->exit {shutdown_s} s (exit {daemon_status})
""")
EOF
    tail -n 16 "$OUT/summary.txt"
    # The capture is large; keep it only when asked.
    [[ -n ${KEEP_PCAP:-} ]] || rm -f "$dir/rtp.pcap"
}

log "results in $OUT; machine: $(nproc) cores, $(uname -r)"
{
    echo "knappval load benchmark $(date -u +%FT%TZ) on $(nproc) cores ($(uname -r)); binary $KNAPPVAL_BIN"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/summary.txt"
for n in $CONCURRENCY; do
    run_one "$n"
done
log "summary: $OUT/summary.txt"
