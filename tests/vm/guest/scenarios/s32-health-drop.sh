# 32. Health: one lost answer causes no restart, even with a threshold of 2
#     failures in a row (the default is 3).
# budget: 60
. ./health-lib.sh
standard_overlays
# A 3 s timeout: only the dropped answer may count as failed, and under TCG
# on a loaded host one answer in many took longer than 1 s (seen once).
health_instance hd 27033 GRACE_SEC=0 INTERVAL_SEC=0.5 TIMEOUT_SEC=3 FAILURES=2
start_instance hd
wait_health_checks hd 3 30
inv=$(systemctl show -P InvocationID "$(unit hd)")
before=$(hfield hd checks)
touch "$(game_dir hd)/drop-one"
wait_health_checks hd $(( before + 12 )) 60
[ "$(grep -c 'drop-one: dropped' "$(game_dir hd)/logs/standin.log")" = 1 ] || fail "the stand-in did not drop exactly one answer"
[ "$(hfield hd failed_checks)" = 1 ] || fail "$(hfield hd failed_checks) failed queries, expected exactly the dropped one"
[ "$(hfield hd consecutive_failures)" = 0 ] || fail "still failing after the drop"
[ "$(systemctl show -P InvocationID "$(unit hd)")" = "$inv" ] || fail "one lost answer restarted the server"
[ "$(hrestarts hd)" = 0 ] || fail "the record holds $(hrestarts hd) restarts"
[ "$(health_events hd failed-query | wc -l)" = 1 ] || fail "expected one failed-query journal entry"
[ "$(health_events hd recovered | wc -l)" = 1 ] || fail "expected one recovered journal entry"
health_events hd
note "one answer dropped: one failed query, recovered, no restart"

# A stop, from the game's last words to the unit's deactivation: the health
# check adds nothing to this path (no ExecStopPost=; docs/health.md).
stop_instance hd
ts() { journalctl --no-pager -o short-unix -u "$(unit hd)" | grep -F "$1" | tail -n 1 | cut -d' ' -f1; }
t_game=$(ts 'SIGINT: shutting down') t_done=$(ts 'Deactivated successfully')
[ -n "$t_game" ] && [ -n "$t_done" ] || fail "cannot find the stop in the journal"
ms=$(awk -v a="$t_game" -v b="$t_done" 'BEGIN{printf "%d", (b - a) * 1000}')
note "game exit to unit stopped: $ms ms"
echo "game-exit-to-stopped-ms $ms" >> "$OUT/health-figures"
health_cleanup hd
