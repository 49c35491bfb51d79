# 24. Job modes through polkit (issue 18, break 3). polkit sees a request's
#     unit and verb, never its job mode. As the service user, every job mode
#     on every start/stop/restart the rule grants (and on the update unit
#     itself, which it must not grant any more); after each, root must get
#     its way at once: a unit that Conflicts= with all of them starts (the
#     same "Transaction is destructive" check that `systemctl reboot` and
#     `isolate` go through; any irreversible start or restart job left on
#     them fails it), and root's own stop of the unit is accepted. Limit
#     from the user's request: 10 s for the Type=exec units (their job ends
#     at exec), 20 s for the server (its jobs include the overlay unit's
#     mount and umount and the game's stop: under TCG a restart took 7.4 s).
#     main's update unit, a oneshot, held its job for the whole run: here a
#     steamcmd that takes 120 s.
# budget: 2400
remove_instance jm
make_instance jm 27034 "" "job modes"
as_user() { runuser -u left4me -- "$@"; }
exec_limit_ms=10000 server_limit_ms=20000
modes="fail replace replace-irreversibly isolate flush ignore-dependencies ignore-requirements"
matrix=$OUT/s24-matrix.txt
printf '%-30s %-8s %-22s %-30s %8s %5s %s\n' unit verb mode "user's request" "root ms" tries "unit after" > "$matrix"

# A steamcmd that takes its time, so an update's start job (main's oneshot,
# started by the user) would last.
printf '#!/bin/sh\necho "slow steamcmd: sleeping"\nsleep 120\nexit 8\n' > /usr/local/bin/slow-steamcmd
chmod 0755 /usr/local/bin/slow-steamcmd
mkdir -p /run/systemd/system/left4me-update.service.d
printf '[Service]\nEnvironment=LEFT4ME_STEAMCMD=/usr/local/bin/slow-steamcmd\n' \
    > /run/systemd/system/left4me-update.service.d/slow-steamcmd.conf
granted="left4me-server@jm.service left4me-overlay@jm.service left4me-reset@jm.service
         left4me-enable@jm.service left4me-disable@jm.service left4me-update.service
         left4me-update-now.service left4me-health@jm.service"
probe=left4me-jm-probe.service
printf '[Unit]\nConflicts=%s\n[Service]\nType=oneshot\nExecStart=/bin/true\n' "$(echo $granted)" \
    > "/run/systemd/system/$probe"
systemctl daemon-reload
cleanup() {
    rm -rf /run/systemd/system/left4me-update.service.d/slow-steamcmd.conf "/run/systemd/system/$probe"
    systemctl daemon-reload
}
trap cleanup EXIT

# No job of ours may linger into the next combination, nor a running update
# (update-now queues one a moment after its own start: while update-now runs
# it is active, then the update's oneshot start job is queued). Two quiet
# polls in a row, 0.2 s apart; each poll is two systemctl calls, which under
# TCG is most of the poll's cost.
busy() {
    local jobs states
    # Captured, not piped into grep -q (SIGPIPE under pipefail).
    jobs=$(systemctl list-jobs --no-legend 2>/dev/null || true)
    grep -Eq 'left4me-|jm-probe' <<<"$jobs" && return 0
    states=$(systemctl show -P ActiveState left4me-update-now.service left4me-update.service)
    grep -Eqv '^(inactive|failed|)$' <<<"$states"
}
settle() {
    local deadline=$(( $(now_ms) + 60000 )) quiet=0
    while [ "$quiet" -lt 2 ]; do
        if busy; then
            quiet=0
            systemctl stop --no-block left4me-update.service 2>/dev/null || true
        else
            quiet=$((quiet + 1))
        fi
        [ "$(now_ms)" -lt "$deadline" ] || fail "jobs still queued 60 s later: $(systemctl list-jobs --no-legend)"
        [ "$quiet" -ge 2 ] || sleep 0.2
    done
}
prepare() { # UNIT VERB: the state a request of VERB on UNIT acts on
    settle
    # Also resets the start limit: this scenario starts jm far more often
    # than StartLimitBurst= allows in a minute.
    systemctl reset-failed 'left4me-*' 2>/dev/null || true
    case $1/$2 in
        left4me-server@*/stop|left4me-server@*/restart)
            systemctl is-active -q "$(unit jm)" || start_instance jm ;;
        *)
            if systemctl is-active -q "$(unit jm)"; then stop_instance jm; fi ;;
    esac
}
worst=0 worst_what='' failures=0 accepted=0
try() { # UNIT VERB MODE
    local u=$1 verb=$2 mode=$3 out rc t0 tries=0 ms err='' state limit_ms=$exec_limit_ms
    case $u in left4me-server@*) limit_ms=$server_limit_ms ;; esac
    prepare "$u" "$verb"
    out=$(timeout 60 runuser -u left4me -- systemctl --no-ask-password "$verb" --no-block --job-mode="$mode" "$u" 2>&1) && rc=0 || rc=$?
    t0=$(now_ms)
    # Root, right away: the Conflicts= probe (reboot's check), retried until
    # accepted or the limit is well past.
    while :; do
        tries=$((tries + 1))
        if err=$(systemctl start --no-block "$probe" 2>&1); then break; fi
        if [ $(( $(now_ms) - t0 )) -ge $((limit_ms + 5000)) ]; then break; fi
        sleep 0.1
    done
    ms=$(( $(now_ms) - t0 ))
    # Refused all along: what an admin has to do, so the matrix can go on.
    if [ "$ms" -ge "$limit_ms" ]; then
        for j in $(systemctl list-jobs --no-legend | awk '$2 ~ /^left4me-/ {print $1}'); do
            systemctl cancel "$j" 2>/dev/null || true
        done
    fi
    # Root's own stop of the unit (the probe stopped it already; this is the
    # stop transaction on its own).
    # (A unit this package does not ship, e.g. update-now on main, has
    # nothing to stop.)
    if ! stop_err=$(systemctl stop --no-block "$u" 2>&1) && ! grep -q 'not loaded' <<<"$stop_err"; then
        fail "root's stop of $u after '$verb --job-mode=$mode' as left4me: $stop_err"
    fi
    state=$(systemctl show -P ActiveState "$u")
    if [ "$rc" = 0 ]; then accepted=$((accepted + 1)); summary="accepted"
    else summary="refused: $(head -n1 <<<"$out" | cut -c1-60)"; fi
    printf '%-30s %-8s %-22s %-30.30s %8d %5d %s\n' "$u" "$verb" "$mode" "$summary" "$ms" "$tries" "$state" >> "$matrix"
    if [ "$ms" -ge "$limit_ms" ]; then
        failures=$((failures + 1))
        echo "ASSERTION: '$verb --job-mode=$mode $u' as left4me: root's transaction refused for $ms ms ($tries tries): $err" >&2
    fi
    [ "$ms" -le "$worst" ] || { worst=$ms; worst_what="$verb --job-mode=$mode $u"; }
}

for mode in $modes; do
    for verb in start stop restart; do try "$(unit jm)" "$verb" "$mode"; done
    for u in left4me-reset@jm.service left4me-enable@jm.service left4me-disable@jm.service \
             left4me-update-now.service left4me-update.service; do
        try "$u" start "$mode"
    done
done
systemctl disable --no-reload "$(unit jm)" 2>/dev/null || true
cat "$matrix"
note "job modes: $(( $(wc -l < "$matrix") - 1 )) requests, $accepted accepted by polkit; root's Conflicts= transaction accepted after at most $worst ms ($worst_what); $failures over their limit"
echo "job modes: worst $worst ms ($worst_what), $failures of $(( $(wc -l < "$matrix") - 1 )) over their limit ($exec_limit_ms ms exec units, $server_limit_ms ms server)" > "$OUT/s24-figures.txt"

# polkit must not let the user start the update unit itself any more (it
# still may through the proxy, checked in s08).
grep -E '^left4me-update\.service +start .* accepted ' "$matrix" &&
    fail "left4me could start left4me-update.service itself (see the matrix)"
[ "$failures" -eq 0 ] || fail "$failures requests as left4me kept root's transactions refused past their limit"

# What is left (docs/unit.md, "Job modes"): --job-mode=flush cancels every
# job queued on the host at that moment, root's included. Shown, not
# prevented (polkit cannot see the mode): root queues a start that waits
# behind a slow one, the user flushes.
printf '[Service]\nType=oneshot\nExecStart=/bin/sleep 5\n' > /run/systemd/system/left4me-jm-slow.service
printf '[Unit]\nAfter=left4me-jm-slow.service\n[Service]\nType=oneshot\nExecStart=/bin/true\n' > /run/systemd/system/left4me-jm-after.service
systemctl daemon-reload
prepare "$(unit jm)" start
systemctl start --no-block left4me-jm-slow.service left4me-jm-after.service
as_user systemctl start --no-block --job-mode=flush "$(unit jm)" || true
sleep 7
if [ "$(systemctl show -P InactiveExitTimestampMonotonic left4me-jm-after.service)" != 0 ]; then after="ran"
else after="never ran (its job was cancelled)"; fi
note "residual: left4me's start --job-mode=flush while root had a queued start: root's job $after"
rm -f /run/systemd/system/left4me-jm-slow.service /run/systemd/system/left4me-jm-after.service
systemctl daemon-reload
remove_instance jm
