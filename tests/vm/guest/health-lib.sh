# shellcheck shell=bash
# Helpers of the health-check scenarios (s14-s17), sourced after lib.sh.
HEALTH_RUN=/run/left4me-health

health_unit() { echo "left4me-health@$1.service"; }
health_record() { echo "$HEALTH_RUN/$1/status.json"; }

# A top-level number or string of the instance's record ("" if absent). The
# record is pretty-printed with top-level keys indented by two spaces.
hfield() {
    sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" "$(health_record "$1")" 2>/dev/null
}
# How many restarts the record's budget holds.
hrestarts() {
    awk '/^  "restarts_ms": \[\]/ {print 0; exit}
         /^  "restarts_ms": \[/ {n=0; inside=1; next}
         inside && /^  \]/ {print n; exit}
         inside {n++}' "$(health_record "$1")"
}

# health_instance NAME PORT SETTING=VALUE...: a fresh instance whose
# instance.env carries L4D2_HEALTH_<SETTING>=VALUE lines, no record left
# from an earlier scenario, and a 3 s stop timeout: a hung stand-in ignores
# SIGINT like a deadlocked srcds, so each stop of it waits out the timeout
# and ends in SIGKILL; 15 s of that per restart would only cost VM time.
health_instance() {
    local name=$1 port=$2 kv
    shift 2
    remove_instance "$name"
    systemctl reset-failed "$(health_unit "$name")" 2>/dev/null || true
    rm -rf "${HEALTH_RUN:?}/$name"
    make_instance "$name" "$port" "base" "health $name"
    for kv in "$@"; do
        echo "L4D2_HEALTH_$kv" >> "$STATE/instances/$name/instance.env"
    done
    mkdir -p "/run/systemd/system/$(unit "$name").d"
    printf '[Service]\nTimeoutStopSec=3s\n' > "/run/systemd/system/$(unit "$name").d/health-test.conf"
    systemctl daemon-reload
}

health_cleanup() {
    remove_instance "$1"
    rm -rf "/run/systemd/system/$(unit "$1").d" "${HEALTH_RUN:?}/$1"
    systemctl daemon-reload
}

game_dir() { echo "$(merged "$1")/left4dead2"; }

# wait_health_checks NAME COUNT TIMEOUT_S: until the check made COUNT queries.
wait_health_checks() {
    local deadline=$(( $(now_ms) + $3 * 1000 )) n
    while :; do
        n=$(hfield "$1" checks)
        [ "${n:-0}" -ge "$2" ] && return 0
        [ "$(now_ms)" -lt "$deadline" ] || fail "health check of $1 made ${n:-no} queries in $3 s, expected $2"
        sleep 0.2
    done
}

# The health check's own process runs as the service user, never root.
expect_health_as_user() {
    local pid uid
    pid=$(systemctl show -P MainPID "$(health_unit "$1")")
    [ "${pid:-0}" -gt 0 ] || fail "$(health_unit "$1") has no main process"
    uid=$(awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$pid/status")
    [ "$uid" = "$(id -u left4me)$(id -u left4me)$(id -u left4me)$(id -u left4me)" ] ||
        fail "health check of $1 runs with uids $uid, not left4me's"
}

# Messages the health check or the verdict logged for an instance with the
# structured field HEALTH_ACTION=ACTION (all actions when omitted); with
# FORMAT=short-unix each line starts with the entry's time in seconds.
health_events() {
    journalctl --no-pager -o "${FORMAT:-cat}" LEFT4ME_INSTANCE="$1" ${2:+HEALTH_ACTION="$2"} 2>/dev/null |
        grep -v '^-- No entries --$' || true
}
