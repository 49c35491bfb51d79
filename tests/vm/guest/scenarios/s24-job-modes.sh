# 24. Job modes (issue 18). polkit sees a request's unit and verb, never its
#     job mode, and `--job-mode=flush` on any granted unit cancelled every
#     job on the host, root's too. So the service user has no grant at all:
#     a. as left4me, every job mode on every job the web app needs (server
#        start/stop/restart, reset/enable/disable, the update) asked of PID 1
#        directly is refused, and nothing changes;
#     b. the old residual, closed: root queues a start that waits, the user's
#        --job-mode=flush is refused and root's job stays and runs;
#     b2. a request never reverses a job root queued (the server's job mode
#        is fail): while root's stop of the server waits, `start` and
#        `restart` requests are answered `error`, root's stop stays and runs;
#     c. every request verb through root's request server (blocking and
#        no-block) is answered `ok`, and right after it root's start of a
#        unit with Conflicts= on all our units (the "Transaction is
#        destructive" check reboot and isolate go through) is accepted at
#        the first try: no request leaves an irreversible job. An `update`
#        within 15 min of the update's last start (even once PID 1 has
#        unloaded the unit with its timestamp) is answered `error 15`;
#     d. what is not a request (a job mode, a unit for a name, 4 KiB, an
#        unknown verb, nothing, a line trickled over 7 s) is answered
#        `error` and queues no job; an account outside the group cannot
#        connect.
#     Figures (times to refusal and to answer) in out/s24-figures.txt, each
#     request in out/s24-matrix.txt.
# budget: 600
remove_instance jm
make_instance jm 27034 "" "job modes"
matrix=$OUT/s24-matrix.txt figures=$OUT/s24-figures.txt
: > "$matrix"; : > "$figures"
ours=(left4me-server@jm.service left4me-overlay@jm.service left4me-reset@jm.service
      left4me-enable@jm.service left4me-disable@jm.service left4me-update.service
      left4me-health@jm.service)
probe=left4me-jm-probe.service
printf '[Unit]\nConflicts=%s\n[Service]\nType=oneshot\nExecStart=/bin/true\n' "${ours[*]}" \
    > "/run/systemd/system/$probe"
# An update that lasts (the update unit is a oneshot: its start job lasts
# the whole run): the fake steamcmd waits after its login.
install_fake_steamcmd
fake_steamcmd_conf 1000 ok sleep=120
cleanup() {
    rm -f "/run/systemd/system/$probe" /run/systemd/system/left4me-jm-slow.service \
        /run/systemd/system/left4me-jm-after.service /run/left4me-jm-after.ran /run/left4me-jm-go "$FAKE_CONF" \
        /run/systemd/system/left4me-jm-hold.service /run/left4me-jm-go2 \
        /run/systemd/system/left4me-update.service.d/fake-steamcmd.conf \
        /run/systemd/system/left4me-verify.service.d/fake-steamcmd.conf
    systemctl daemon-reload
}
trap cleanup EXIT
jobs_of_ours() { systemctl list-jobs --no-legend 2>/dev/null | grep -E 'left4me-|jm-probe' || true; }
update_busy() {
    case $(systemctl show -P ActiveState left4me-update.service) in inactive|failed) return 1 ;; esac
}
# No job of ours may linger into the next step, nor a running update.
settle() {
    local deadline=$(( $(now_ms) + 60000 )) quiet=0
    while [ "$quiet" -lt 2 ]; do
        if [ -n "$(jobs_of_ours)" ] || update_busy; then
            quiet=0
            systemctl stop --no-block left4me-update.service 2>/dev/null || true
        else
            quiet=$((quiet + 1))
        fi
        [ "$(now_ms)" -lt "$deadline" ] || fail "jobs still queued 60 s later: $(systemctl list-jobs --no-legend)"
        [ "$quiet" -ge 2 ] || sleep 0.2
    done
    # Also the start limit: this scenario starts jm more often than
    # StartLimitBurst= allows in a minute. Not the update's: a failed unit
    # stays loaded, and with it the last start the update spacing reads.
    systemctl reset-failed 'left4me-*@jm.service' 'left4me-jm-*' 2>/dev/null || true
}
# running yes|no: jm's server as the next step needs it, set by root.
running() {
    settle
    if [ "$1" = yes ]; then systemctl is-active -q "$(unit jm)" || start_instance jm
    elif systemctl is-active -q "$(unit jm)"; then stop_instance jm; fi
}
stats() { # integers on stdin -> "median M ms, max X ms (n=N)"
    sort -n | awk '{ v[NR] = $1 } END { printf "median %d ms, max %d ms (n=%d)", v[int((NR + 1) / 2)], v[NR], NR }'
}
install -d -m 0700 /run/left4me-s24
requests_mark() {
    journalctl --sync 2>/dev/null || true
    REQ_CURSOR=$(journalctl -n 1 -o cat --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
}
requests_journal() {
    journalctl --sync 2>/dev/null || true
    journalctl --no-pager -o cat -u left4me-requests.service --after-cursor "$REQ_CURSOR"
}
uid=$(id -u left4me)

# a. PID 1 refuses the service user every job, in every job mode. jm runs
#    meanwhile: a stop or restart let through would show.
running yes
inv=$(systemctl show -P InvocationID "$(unit jm)")
update_mark
asks="start:left4me-server@jm.service stop:left4me-server@jm.service restart:left4me-server@jm.service
      start:left4me-reset@jm.service start:left4me-enable@jm.service start:left4me-disable@jm.service
      start:left4me-update.service"
# All 49 from one shell of the service user (a runuser each was a third
# of this part's time under TCG); one line each: MODE VERB UNIT RC MS FIRST
# LINE OF SYSTEMCTL'S OUTPUT.
# shellcheck disable=SC2016 # expanded by the user's bash
tried=$(runuser -u left4me -- bash -c '
    for mode in replace fail replace-irreversibly isolate flush ignore-dependencies ignore-requirements; do
        for j in $1; do
            t0=${EPOCHREALTIME/./}
            out=$(timeout 60 systemctl --no-ask-password --no-block --job-mode="$mode" "${j%%:*}" "${j#*:}" 2>&1) && rc=0 || rc=$?
            IFS= read -r first <<<"$out" || true
            printf "%s %s %s %s %d %s\n" "$mode" "${j%%:*}" "${j#*:}" "$rc" $(( (${EPOCHREALTIME/./} - t0) / 1000 )) "$first"
        done
    done' _ "$asks")
refused_ms=()
while read -r mode verb u rc ms out; do
    refused_ms+=("$ms")
    printf 'a  %-10s %-22s %-32s rc=%-3s %6d ms  %s\n' "$verb" "$mode" "$u" "$rc" "$ms" "$out" >> "$matrix"
    { [ "$rc" != 0 ] && denied "$out"; } ||
        fail "PID 1 did not refuse left4me 'systemctl $verb --job-mode=$mode $u' (rc $rc): $out"
done <<<"$tried"
[ "${#refused_ms[@]}" = 49 ] || fail "49 jobs asked for, ${#refused_ms[@]} answers: $tried"
[ -z "$(jobs_of_ours)" ] || fail "refused requests left jobs: $(jobs_of_ours)"
if [ "$(systemctl show -P InvocationID "$(unit jm)")" != "$inv" ] || [ "$(active_state jm)" != active ]; then
    fail "jm was restarted or stopped by refused requests (now $(active_state jm))"
fi
[ "$(systemctl is-enabled "$(unit jm)" 2>/dev/null)" != enabled ] || fail "a refused enable enabled jm"
ran=$(journalctl --no-pager -o cat --after-cursor "$UPDATE_CURSOR" -u left4me-reset@jm.service \
    -u left4me-enable@jm.service -u left4me-disable@jm.service -u left4me-update.service)
[ -z "$ran" ] || fail "a refused start ran a unit: $ran"
fig_a="a. PID 1 refused left4me all ${#refused_ms[@]} jobs (7 job modes x 7 jobs): $(printf '%s\n' "${refused_ms[@]}" | stats) to the refusal"
note "$fig_a"; echo "$fig_a" >> "$figures"

# b. The flush attack: root's start of left4me-jm-after waits behind a slow
#    start; the service user's flush (on our server, on the update, on
#    root's own unit) is refused, and root's job stays queued and runs.
# The slow start holds until root releases it, after the flushes.
printf '[Service]\nType=oneshot\nTimeoutStartSec=60\nExecStart=/bin/sh -c "until [ -e /run/left4me-jm-go ]; do sleep 0.1; done"\n' \
    > /run/systemd/system/left4me-jm-slow.service
printf '[Unit]\nAfter=left4me-jm-slow.service\n[Service]\nType=oneshot\nExecStart=/bin/touch /run/left4me-jm-after.ran\n' \
    > /run/systemd/system/left4me-jm-after.service
rm -f /run/left4me-jm-after.ran /run/left4me-jm-go
systemctl daemon-reload
running no
systemctl start --no-block left4me-jm-slow.service left4me-jm-after.service
for u in "$(unit jm)" left4me-update.service left4me-jm-after.service; do
    out=$(runuser -u left4me -- systemctl --no-ask-password --no-block --job-mode=flush start "$u" 2>&1) && rc=0 || rc=$?
    printf 'b  start      %-22s %-32s rc=%-3s %s\n' flush "$u" "$rc" "$(head -n1 <<<"$out")" >> "$matrix"
    { [ "$rc" != 0 ] && denied "$out"; } || fail "left4me's start --job-mode=flush $u was not refused (rc $rc): $out"
done
queued=$(systemctl list-jobs --no-legend left4me-jm-after.service)
[ -n "$queued" ] || fail "root's queued start of left4me-jm-after.service is gone after left4me's flush"
t0=$(now_ms)
touch /run/left4me-jm-go
until [ -e /run/left4me-jm-after.ran ]; do
    [ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "root's queued left4me-jm-after.service never ran"
    sleep 0.2
done
fig_b="b. left4me's start --job-mode=flush refused 3 times while root's start waited; root's job stayed queued ($(awk '{print $1, $2, $3, $4}' <<<"$queued")) and ran $(( $(now_ms) - t0 )) ms after root released the slow start"
note "$fig_b"; echo "$fig_b" >> "$figures"
settle

# b2. Root stops jm behind a unit ordered after it whose stop waits for
#     root's release: root's stop job of jm waits. Requests that would
#     replace it are refused (job mode fail), and it stays.
printf '[Unit]\nAfter=%s\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\nTimeoutStopSec=60\nExecStop=/bin/sh -c "until [ -e /run/left4me-jm-go2 ]; do sleep 0.1; done"\n' \
    "$(unit jm)" > /run/systemd/system/left4me-jm-hold.service
rm -f /run/left4me-jm-go2
systemctl daemon-reload
running yes
systemctl start left4me-jm-hold.service
systemctl stop --no-block left4me-jm-hold.service "$(unit jm)"
queued=$(systemctl list-jobs --no-legend "$(unit jm)")
[[ $queued == *" stop "* ]] || fail "root's stop of jm is not queued: ${queued:-no job}"
refusals=''
for line in "start jm" "restart jm no-block" "restart jm"; do
    out=$(request "$line") && fail "'$line' answered ok while root's stop of jm waited: a request reversed root's job"
    printf 'b2 %-24s while root stop waits: %s\n' "$line" "$(cut -c1-160 <<<"$out")" >> "$matrix"
    [[ $out == "error "* ]] || fail "'$line' while root's stop of jm waited: $out"
    refusals+=" '$line': ${out:0:140};"
done
[[ $(systemctl list-jobs --no-legend "$(unit jm)") == *" stop "* ]] ||
    fail "root's stop of jm is gone after the requests: $(systemctl list-jobs --no-legend)"
touch /run/left4me-jm-go2
wait_state jm inactive 30
wait_unmounted jm 30
fig_b2="b2. while root's stop of jm waited, requests that would reverse it were refused and root's stop ran:$refusals"
note "$fig_b2"; echo "$fig_b2" >> "$figures"
settle

# c. Every request verb through the socket: answered ok; right after it
#    root's Conflicts= transaction is accepted at once, and root wins (the
#    probe stops whatever the request started). A request may start the
#    update once per 15 min of the last update request this run of the
#    server ran (its journal's `done for ...: update`), which another
#    scenario may have made: within that, `error 15`. Root's own runs do
#    not count.
spaced() {
    local id log
    id=$(systemctl show -P InvocationID left4me-requests.service)
    [ -n "$id" ] || return 0
    journalctl --sync 2>/dev/null || true
    log=$(journalctl --no-pager -o cat --since "@$(( $(date +%s) - 900 ))" _SYSTEMD_INVOCATION_ID="$id")
    ! grep -Eq '^done for uid [0-9]+ pid [0-9]+: update( no-block)?$' <<<"$log"
}
answer_ms=() answer_fig='' served=0 spacing=0 update_started=''
for req in "start jm:no" "start jm no-block:no" "restart jm:yes" "restart jm no-block:yes" \
           "stop jm:yes" "stop jm no-block:yes" "reset jm:no" "reset jm no-block:no" \
           "enable jm:no" "enable jm no-block:no" "disable jm:no" "disable jm no-block:no" \
           "update:no" "update no-block:no"; do
    line=${req%:*}
    running "${req##*:}"
    inv=$(systemctl show -P InvocationID "$(unit jm)")
    requests_mark
    t0=$(now_ms)
    expect=ok
    # Once this loop started the update, whatever systemd remembers.
    case $line in update*) { spaced && [ -z "$update_started" ]; } || expect=spacing ;; esac
    out=$(REQUEST_TIMES=1 request "$line" 2>/run/left4me-s24/times) || true
    t_answer=$(( $(now_ms) - t0 ))
    ms=$(sed -n 's/^request-ms //p' /run/left4me-s24/times)
    answer_ms+=("$ms")
    if [ "$expect" = spacing ]; then
        [[ $out == "error 15 "*"once per 15 min"* ]] ||
            fail "'$line' within 15 min of the update's last start: $out (left4me-update.service: $(systemctl show -P LoadState,ActiveState,InactiveExitTimestamp left4me-update.service | paste -sd' '))"
        [ -z "$(jobs_of_ours)" ] || fail "'$line' refused, but a job appeared: $(jobs_of_ours)"
        printf 'c  %-24s answer %s\n' "$line" "$(cut -c1-160 <<<"$out")" >> "$matrix"
        answer_fig+=" $line=${ms}ms (spacing);"
        spacing=$((spacing + 1))
        continue
    fi
    [ "$out" = ok ] || fail "request '$line': $out"
    served=$((served + 1))
    case $line in update*) update_started=1 ;; esac
    # What a blocking request's answer promises is done.
    case $line in
        "start jm") [ "$(active_state jm)" = active ] || fail "'start jm' answered ok, jm is $(active_state jm)" ;;
        "restart jm") if [ "$(systemctl show -P InvocationID "$(unit jm)")" = "$inv" ] || [ "$(active_state jm)" != active ]; then
                          fail "'restart jm' answered ok, no new run of jm ($(active_state jm))"
                      fi ;;
        "stop jm") [ "$(active_state jm)" = inactive ] || fail "'stop jm' answered ok, jm is $(active_state jm)" ;;
        "enable jm") [ -L /etc/systemd/system/multi-user.target.wants/left4me-server@jm.service ] || fail "'enable jm' left no link" ;;
        "disable jm") [ ! -e /etc/systemd/system/multi-user.target.wants/left4me-server@jm.service ] || fail "'disable jm' left the link" ;;
        update*) t1=$(now_ms)
                 until [ "$(systemctl show -P ActiveState left4me-update.service)" = activating ]; do
                     [ $(( $(now_ms) - t1 )) -lt 20000 ] || fail "'$line' answered ok, the update is $(systemctl show -P ActiveState left4me-update.service)"
                     sleep 0.1
                 done ;;
    esac
    left=$(jobs_of_ours | awk '{print $2 "/" $3 "/" $4}' | paste -sd' ')
    # Root, right away, once: reboot's destructive-transaction check.
    tries=1
    if ! err=$(systemctl start --no-block "$probe" 2>&1); then
        fail "root's start of $probe (Conflicts= on our units) refused right after the request '$line' (jobs: ${left:-none}): $err"
    fi
    for u in "${ours[@]}"; do
        systemctl stop --no-block "$u" 2>/dev/null || fail "root's stop of $u refused after the request '$line'"
    done
    settle
    { [ "$(active_state jm)" = inactive ] && ! update_busy; } ||
        fail "after '$line' and root's probe: jm $(active_state jm), update $(systemctl show -P ActiveState left4me-update.service)"
    log=$(requests_journal)
    { grep -q "request from uid $uid pid [0-9]*: $line\$" <<<"$log" && grep -q "done for uid $uid pid [0-9]*: $line\$" <<<"$log"; } ||
        fail "the request server's journal lacks '$line' from uid $uid: $log"
    printf 'c  %-24s answer %-3s %6d ms (with the client start %5d ms)  jobs then: %-40s root tries %d\n' "$line" "$out" "$ms" "$t_answer" "${left:-none}" "$tries" >> "$matrix"
    answer_fig+=" $line=${ms}ms;"
done
systemctl disable --no-reload "$(unit jm)" 2>/dev/null || true
# PID 1 unloads the update unit once it is inactive and nothing refers to
# it (after a run that ended well; here root's reset-failed of the stopped
# run), and its InactiveExitTimestamp with it: the server must still
# remember the update it started itself.
systemctl reset-failed left4me-update.service 2>/dev/null || true
sleep 1
unloaded=yes
[ -z "$(systemctl list-units --all --no-legend --plain left4me-update.service)" ] || unloaded="no (still loaded)"
out=$(request update) &&
    fail "an update request once PID 1 unloaded the unit (unloaded: $unloaded) was answered ok: the 15-min spacing forgot the server's own run"
[[ $out == "error 15 "*"once per 15 min"* ]] || fail "an update request once the unit was unloaded: $out"
printf 'c  %-24s answer %s\n' "update (unit unloaded: $unloaded)" "$(cut -c1-160 <<<"$out")" >> "$matrix"
spacing=$((spacing + 1))
fig_c="c. $served requests answered ok ($spacing updates refused for the 15-min spacing), root's Conflicts= transaction accepted at the first try after each; answer (connect to answer line): $(printf '%s\n' "${answer_ms[@]}" | stats):$answer_fig"
note "$fig_c"; echo "$fig_c" >> "$figures"

# d. What is not a request: answered `error`, nothing queued, logged as
#    refused with the asker's uid.
running no
junk_ms=()
junk() { # LABEL LINE [REQUEST_SLOW]
    local out ms
    requests_mark
    out=$(REQUEST_SLOW=${3:-} REQUEST_TIMES=1 request "$2" 2>/run/left4me-s24/times) || true
    ms=$(sed -n 's/^request-ms //p' /run/left4me-s24/times)
    junk_ms+=("$1=${ms}ms")
    printf 'd  %-26s %6d ms  %s\n' "$1" "$ms" "$(cut -c1-120 <<<"$out")" >> "$matrix"
    [[ $out == "error "[0-9]*" "* ]] || fail "junk ($1) not answered 'error CODE ...' but '$out' after $ms ms"
    # A trickled line is cut off at the 5 s deadline of the whole line.
    [ -z "${3:-}" ] || [ "$ms" -lt 6500 ] || fail "junk ($1) answered after $ms ms, past the 5 s deadline"
    [ -z "$(jobs_of_ours)" ] || fail "junk ($1) queued a job: $(jobs_of_ours)"
    [ "$(active_state jm)" = inactive ] || fail "junk ($1) started jm"
    grep -q "refused for uid $uid pid [0-9]*: " <<<"$(requests_journal)" || fail "junk ($1): no 'refused for uid $uid' in the journal"
    ! grep -q "request from uid" <<<"$(requests_journal)" || fail "junk ($1) was taken for a request: $(requests_journal)"
    note "junk ($1): $out"
}
junk "job mode" "start jm --job-mode=flush"
junk "unit name" "start sshd.service"
junk "option as name" "stop --job-mode=flush"
junk "4 KiB line" "$(head -c 4096 /dev/zero | tr '\0' s)"
junk "unknown verb" "isolate jm"
junk "empty line" ""
out=$(AS=nobody request "stop jm") && fail "nobody's request was answered ok"
[[ $out == *"Permission denied"* ]] || fail "nobody could connect to $REQUESTS_SOCK: $out"
note "nobody: $out"
# Last, as it runs longest: a line trickled a byte a second (8 bytes, 7 s)
# must not arrive: the whole line is read within 5 s of the connection
# (src/requests.rs), not each read.
junk "trickled over 7 s" "stop jm" 1
fig_d="d. junk answered error, no job queued:$(printf ' %s' "${junk_ms[@]}")"
note "$fig_d"; echo "$fig_d" >> "$figures"
cat "$matrix"
remove_instance jm
rm -rf /run/left4me-s24
