# shellcheck shell=bash
# Helpers of the health-check scenarios (s30-s33), sourced after lib.sh.
HEALTH_RUN=/run/left4me-health

health_unit() { echo "left4me-health@$1.service"; }
health_record() { echo "$HEALTH_RUN/$1/status.json"; }

# A top-level number or string of the instance's record ("" if absent). The
# record is pretty-printed with top-level keys indented by two spaces.
hfield() {
    sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" "$(health_record "$1")" 2>/dev/null || true
}
# How many restarts the record's budget holds.
hrestarts() {
    awk '/^  "restarts_ms": \[\]/ {print 0; exit}
         /^  "restarts_ms": \[/ {n=0; inside=1; next}
         inside && /^  \]/ {print n; exit}
         inside {n++}' "$(health_record "$1")" 2>/dev/null || true
}

# health_instance NAME PORT SETTING=VALUE...: a fresh instance whose
# instance.env carries L4D2_HEALTH_<SETTING>=VALUE lines and no record left
# from an earlier scenario. With FAST_STOP=1 the server gets KillSignal=SIGKILL
# (runtime drop-in; SuccessExitStatus= keeps such a stop clean): a hung
# stand-in ignores SIGINT like a deadlocked srcds, so each stop of it would
# wait out TimeoutStopSec=15s first; s30 shows that path once, s33 would only
# spend VM time on it.
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
    if [ "${FAST_STOP:-0}" = 1 ]; then
        mkdir -p "/run/systemd/system/$(unit "$name").d"
        printf '[Service]\nKillSignal=SIGKILL\nSuccessExitStatus=SIGKILL\n' \
            > "/run/systemd/system/$(unit "$name").d/health-test.conf"
        systemctl daemon-reload
    fi
}

# Under emulation systemd needs seconds to set up the check's sandbox.
wait_health_active() {
    local deadline=$(( $(now_ms) + 30000 ))
    until [ "$(systemctl is-active "$(health_unit "$1")")" = active ]; do
        [ "$(now_ms)" -lt "$deadline" ] ||
            fail "$(health_unit "$1") is $(systemctl is-active "$(health_unit "$1")") 30 s after the server started"
        sleep 0.2
    done
}

health_cleanup() {
    remove_instance "$1"
    if [ -d "/run/systemd/system/$(unit "$1").d" ]; then
        rm -rf "/run/systemd/system/$(unit "$1").d"
        systemctl daemon-reload
    fi
    rm -rf "${HEALTH_RUN:?}/$1"
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

# The health check's own process runs as its own user, never root nor the
# service user.
expect_health_as_its_user() {
    local pid uid h out
    pid=$(systemctl show -P MainPID "$(health_unit "$1")")
    [ "${pid:-0}" -gt 0 ] || fail "$(health_unit "$1") has no main process"
    uid=$(awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$pid/status")
    h=$(id -u left4me-health)
    [ "$uid" = "$h$h$h$h" ] || fail "health check of $1 runs with uids $uid, not left4me-health's"
    # Nor can the service user signal it (another uid, and no capability).
    if out=$(runuser -u left4me -- kill -0 "$pid" 2>&1); then fail "left4me can signal the health check of $1"; fi
    [[ $out == *'Operation not permitted'* ]] || fail "kill -0 of the health check as left4me failed otherwise: $out"
}

# Messages the health check logged for an instance with the
# structured field HEALTH_ACTION=ACTION (all actions when omitted); with
# FORMAT=short-unix each line starts with the entry's time in seconds.
health_events() {
    journalctl --no-pager -o "${FORMAT:-cat}" LEFT4ME_INSTANCE="$1" ${2:+HEALTH_ACTION="$2"} 2>/dev/null |
        grep -v '^-- No entries --$' || true
}
