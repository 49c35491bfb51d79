# 33. Health: a server that hangs on every start ends `failed`, with the
#     health check's reason in the journal, after RESTARTS_MAX restarts;
#     systemd's start limit (5 in 60 s) could never see that. The check asks
#     root's request server to end it (`fail ha`: SIGSYS to the server's main
#     process; the check, another user, cannot signal the game), which
#     RestartPreventExitStatus= keeps from being restarted.
#     A deliberate start afterwards works and gets a fresh budget.
# budget: 130
. ./health-lib.sh
standard_overlays
max=2
FAST_STOP=1 health_instance ha 27034 GRACE_SEC=2 INTERVAL_SEC=1 TIMEOUT_SEC=1 FAILURES=2 RESTARTS_MAX=$max RESTARTS_WINDOW_SEC=600
: > "$STATE/instances/ha/layer/left4dead2/hang"
t0=$(now_ms)
systemctl start --no-block "$(unit ha)"
# Per run: the start (seconds under emulation), grace 2 s, two failed
# queries (~3 s), the stop; three runs.
deadline=$(( t0 + 120000 ))
settled=0
while [ "$settled" -lt 5 ]; do
    [ "$(now_ms)" -lt "$deadline" ] ||
        fail "not settled in failed after 120 s (state $(active_state ha), health: $(health_events ha | tail -n 3))"
    if [ "$(active_state ha)" = failed ] && [[ $(systemctl list-jobs --no-legend) != *"$(unit ha)"* ]]; then
        settled=$((settled + 1))
    else
        settled=0
    fi
    sleep 0.5
done
secs=$(( ($(now_ms) - t0) / 1000 ))
runs=$(unit_journal ha | grep -c 'hang: ' || true)
[ "$runs" = $(( max + 1 )) ] || fail "$runs runs of the server hung, expected $(( max + 1 ))"
[ "$(health_events ha restart | wc -l)" = "$max" ] || fail "expected $max restarts by the health check"
[ "$(health_events ha failed | wc -l)" = 1 ] || fail "expected one give-up by the health check"
[ -z "$(health_events ha refused)" ] || fail "the check could not signal the server: $(health_events ha refused)"
reason=$(journalctl --no-pager -o cat _SYSTEMD_UNIT="$(health_unit ha)" LEFT4ME_INSTANCE=ha HEALTH_ACTION=failed) ||
    fail "no journal entry of the health check's unit with the instance and HEALTH_ACTION=failed"
echo "$reason"
[[ $reason == *"no A2S_INFO answer"* ]] || fail "the reason does not say why"
[[ $reason == *"already restarted it $max times within 600 s"* ]] || fail "the reason does not name the budget"
# The server's main process died of the check's SIGSYS (result signal, or
# core-dump where a core is written), and systemd did not restart it.
result=$(systemctl show -P Result "$(unit ha)")
case $result in signal | core-dump) ;; *) fail "result is $result, expected signal (SIGSYS from the health check)" ;; esac
unit_journal ha | grep -q 'status=31/SYS' || fail "no SIGSYS exit in the server's journal"
[ "$(systemctl show -P ExecMainStatus "$(unit ha)")" = 31 ] || fail "the main process's status is not SIGSYS (31)"
wait_unmounted ha 15
journalctl --sync 2>/dev/null || true
journalctl --no-pager -o cat -u left4me-requests.service |
    grep -q "^done for uid $(id -u left4me-health) pid [0-9]*: fail ha no-block$" ||
    fail "the request server did not log the check's fail request: $(journalctl --no-pager -o cat -u left4me-requests.service | tail -n 5)"
note "failed (result $result, main process SIGSYS) after $runs hung runs in $secs s, overlay unmounted"
grep -q '"gave_up": {' "$(health_record ha)" || fail "the record does not show the give-up"
grep -q '"server_pid": [1-9]' "$(health_record ha)" || fail "the record does not name the signalled PID"

rm -f "$STATE/instances/ha/layer/left4dead2/hang"
start_instance ha
expect_a2s 27034 "health ha"
[ "$(hrestarts ha)" = 0 ] || fail "a deliberate start after the give-up did not get a fresh budget"
stop_instance ha
[ "$(systemctl show -P Result "$(unit ha)")" = success ] || fail "a normal stop after the give-up is not a success"
health_cleanup ha
