# 17. Health: a server that hangs on every start ends `failed`, with the
#     health check's reason in the server's journal, after RESTARTS_MAX
#     restarts; systemd's start limit (5 in 60 s) could never see that.
#     A deliberate start afterwards works and gets a fresh budget.
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
[ "$(health_events ha stop | wc -l)" = 1 ] || fail "expected one stop by the health check"
reason=$(unit_journal ha | grep 'stopped by its health check') || fail "the server's journal lacks the health check's reason"
echo "$reason"
[[ $reason == *"already restarted it $max times within 600 s"* ]] || fail "the reason does not name the budget"
journalctl --no-pager -o cat _SYSTEMD_UNIT="$(unit ha)" LEFT4ME_INSTANCE=ha HEALTH_ACTION=failed | grep -q 'no A2S_INFO answer' ||
    fail "the verdict's journal entry lacks the fields"
# The stop itself was clean (SIGKILL counts as success here): the failure is
# the verdict's, exit 20 from ExecStopPost=.
result=$(systemctl show -P Result "$(unit ha)")
[ "$result" = exit-code ] || fail "result is $result, expected exit-code from the verdict"
unit_journal ha | grep -q 'Control process exited, code=exited, status=20' || fail "no verdict exit 20 in the server's journal"
wait_unmounted ha 15
note "failed (result $result, verdict exit 20) after $runs hung runs in $secs s, overlay unmounted"
grep -q '"gave_up": {' "$(health_record ha)" || fail "the record does not show the give-up"

rm -f "$STATE/instances/ha/layer/left4dead2/hang"
start_instance ha
expect_a2s 27034 "health ha"
[ "$(hrestarts ha)" = 0 ] || fail "a deliberate start after the give-up did not get a fresh budget"
stop_instance ha
[ "$(systemctl show -P Result "$(unit ha)")" = success ] || fail "a normal stop after the give-up is not a success"
health_cleanup ha
