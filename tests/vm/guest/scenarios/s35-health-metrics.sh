# 35. Metrics, map loads and Steam's update notice: two stand-ins with the
#     default interval (10 s), timeout (2 s), failure count (4) and map load
#     window (120 s); one has players. Debian's own prometheus-node-exporter,
#     pointed at /run/left4me-metrics beside its default directory, serves
#     each instance's figures with the right values, and promtool (Debian's
#     prometheus package) finds nothing wrong with the files. Both servers
#     then print Steam's "needs to be restarted" notice: one update run,
#     and none within 20 s of it (L4D2_HEALTH_STEAM_UPDATE_SEC=20 here, so
#     the update run just before counts first). Then one stand-in changes map and loads for
#     50 s, answering nothing, while the other stalls for 50 s without a map
#     change: the loading one shows "changing-map", counts no failure and is
#     not restarted; the stalled one goes to up 0 and is restarted, its
#     counter says so.
# budget: 540
. ./health-lib.sh
standard_overlays
PROMTOOL=$SHARE/bin/promtool
[ -x "$PROMTOOL" ] || fail "no promtool in the share (tests/vm/lib.sh vm_promtool)"
MDIR=/run/left4me-metrics

# Root's, the health units' group's to write (dist/left4me.tmpfiles.in):
# the checks below still write their files into it.
[ "$(stat -c '%U:%G %a' "$MDIR")" = "root:left4me-health 775" ] || fail "$MDIR is $(stat -c '%U:%G %a' "$MDIR"), expected root:left4me-health 775"
cat > /etc/default/prometheus-node-exporter <<'EOF'
ARGS="--collector.textfile.directory=/var/lib/prometheus/node-exporter --collector.textfile.directory=/run/left4me-metrics"
EOF
systemctl restart prometheus-node-exporter || fail "prometheus-node-exporter does not start with two textfile directories"

scrape() { curl -fsS --max-time 5 http://localhost:9100/metrics 2>/dev/null || true; }
# sample NAME INSTANCE [MORE_LABEL]: the value of the one series of NAME
# for INSTANCE (node exporter sorts labels by name).
sample() {
    scrape | awk -v n="$1" -v i="left4me_instance=\"$2\"" -v m="${3:-}" \
        'index($0, n "{") == 1 && index($0, i) && index($0, m) { print $NF; exit }'
}
# wait_sample NAME INSTANCE VALUE TIMEOUT_S [MORE_LABEL]
wait_sample() {
    local deadline=$(( $(now_ms) + $4 * 1000 )) v
    while :; do
        v=$(sample "$1" "$2" "${5:-}")
        [ "$v" = "$3" ] && return 0
        [ "$(now_ms)" -lt "$deadline" ] || fail "$1{$2${5:+,$5}} is '${v:-absent}' after $4 s, expected $3"
        sleep 0.5
    done
}

FAST_STOP=1 health_instance mp 27041 GRACE_SEC=0 STEAM_UPDATE_SEC=20
FAST_STOP=1 health_instance mh 27042 GRACE_SEC=0 STEAM_UPDATE_SEC=20
start_instance mp
start_instance mh
echo "3 1" > "$(game_dir mp)/players"
wait_health_active mp
wait_health_active mh
wait_sample a2s_server_up mp 1 40
wait_sample a2s_server_up mh 1 40
# The players file is read per query: the next answer after it.
wait_sample a2s_server_players mp 4 30
for f in "$MDIR/left4me_mp.prom" "$MDIR/left4me_mh.prom" "$MDIR/left4me_host.prom"; do
    [ "$(stat -c '%U %a' "$f")" = "left4me-health 644" ] || fail "$f is $(stat -c '%U %a' "$f")"
    "$PROMTOOL" check metrics < "$f" || fail "promtool check metrics finds problems in $f"
done
note "promtool check metrics: no problem in left4me_mp.prom, left4me_mh.prom, left4me_host.prom"
scrape | grep -E '^(a2s_|left4me_)' > "$OUT/s35-scrape.txt"
[ "$(sample a2s_server_bots mp)" = 1 ] || fail "mp bots: $(sample a2s_server_bots mp)"
[ "$(sample a2s_server_max_players mp)" = 8 ] || fail "mp max players: $(sample a2s_server_max_players mp)"
[ "$(sample a2s_server_players mh)" = 0 ] || fail "mh players: $(sample a2s_server_players mh)"
[ "$(sample a2s_server_info mp 'server_name="health mp"')" = 1 ] || fail "no a2s_server_info for mp with its hostname"
[ "$(sample a2s_server_info mp 'map="c1m1_hotel"')" = 1 ] || fail "mp's info does not show c1m1_hotel"
[ "$(sample left4me_health_state mp 'state="answering"')" = 1 ] || fail "mp is not 'answering'"
[ "$(sample left4me_health_restarts_total mh)" = 0 ] || fail "mh starts with restarts"
for i in mp mh; do
    mem=$(sample left4me_server_memory_bytes $i) tasks=$(sample left4me_server_tasks $i)
    cpu=$(sample left4me_server_cpu_seconds_total $i) n=$(sample left4me_server_restarts_total $i)
    # Node exporter writes large values as floats (3.661824e+06).
    awk -v m="$mem" -v t="$tasks" 'BEGIN { exit !(m + 0 > 100000 && t + 0 >= 1) }' ||
        fail "$i memory '$mem', tasks '$tasks'"
    if [ -z "$cpu" ] || [ -z "$n" ]; then fail "$i has no CPU seconds or NRestarts sample"; fi
    [ -n "$(sample left4me_server_memory_peak_bytes $i)" ] || fail "$i has no memory peak (trixie's systemd has MemoryPeak=)"
    note "$i: memory $mem B, tasks $tasks, CPU $cpu s, NRestarts $n"
done
hostm=$(scrape | grep '^left4me_generation\|^left4me_update')
echo "$hostm"
if [ -e "$GENS/current" ]; then
    grep -q "^left4me_generation_current_info{.*generation=\"$(gen_current)\"" <<< "$hostm" ||
        fail "the host metrics do not name generation $(gen_current)"
    [ "$(sed -n 's/^left4me_generations \([0-9]*\)$/\1/p' <<< "$hostm")" = "$(gen_ids | wc -l)" ] ||
        fail "left4me_generations differs from $(gen_ids | wc -l) generations on disk"
fi

# A failed update (the fake steamcmd fails like steamcmd, exit 8) shows in
# the host file within about one interval.
host_sample() { scrape | awk -v n="$1" '$1 == n { print $NF; exit }'; }
install_fake_steamcmd
fake_steamcmd_conf 1001 fail
if run_update 2>/dev/null; then fail "left4me-update.service succeeded with a failing steamcmd"; fi
deadline=$(( $(now_ms) + 30000 ))
until [ "$(host_sample left4me_update_last_success)" = 0 ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "left4me_update_last_success is '$(host_sample left4me_update_last_success)' 30 s after a failed update"
    sleep 0.5
done
ended=$(host_sample left4me_update_last_run_timestamp_seconds)
awk -v t="$ended" -v now="$(date +%s)" 'BEGIN { exit !(t + 0 > now - 120 && t + 0 <= now) }' ||
    fail "left4me_update_last_run_timestamp_seconds '$ended' is not the failed run's end"
[ "$(host_sample left4me_update_running)" = 0 ] || fail "left4me_update_running after the run"
"$PROMTOOL" check metrics < "$MDIR/left4me_host.prom" || fail "promtool check metrics finds problems in the host file after an update"
note "failed update: left4me_update_last_success 0, ended $ended"

# Steam's notice in both servers' output, repeated every 5 s, soon after
# that update's start: the checks wait until 30 s have passed since it,
# then one update is queued (the update unit's own start is the host-wide
# clock); the notices after it are too soon. Two checks that ask within the
# same second both log it, and systemd merges the second start into the
# first (a start of a unit already starting is no new job): one run.
upd_start() { systemctl show -P InactiveExitTimestampMonotonic left4me-update.service; }
# A request server that ran no update request yet: an earlier scenario's
# would keep this one's within its 15-min spacing (root's run above does
# not count).
systemctl restart left4me-requests.service
first_start=$(upd_start)
t_notice=$(date +%s)
echo 5000 | tee "$(game_dir mp)/steam-update" > "$(game_dir mh)/steam-update"
deadline=$(( $(now_ms) + 90000 ))
until [ "$(upd_start)" != "$first_start" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "no update was queued 90 s after both servers printed Steam's notice"
    sleep 0.5
done
t_queued=$(( $(date +%s) - t_notice ))
# 15 s more of notices every 5 s: all within the 20 s after that start, in
# which no check may queue another (the next may come 20 s after it).
sleep 15
rm -f "$(game_dir mp)/steam-update" "$(game_dir mh)/steam-update"
journalctl --no-pager -o cat -t srcds --since "@$t_notice" | grep -q '^Your server needs to be restarted in order to receive the latest update.$' ||
    fail "the notice is not in the game's journal (the relay must pass it on)"
starts=$(journalctl --no-pager -o cat --since "@$t_notice" UNIT=left4me-update.service | grep -c '^Starting ' || true)
[ "$starts" = 1 ] || fail "left4me-update.service started $starts times within 15 s of the first notice-driven start (L4D2_HEALTH_STEAM_UPDATE_SEC=20), expected 1"
queued=$( { health_events mp update-queued; health_events mh update-queued; } | wc -l)
if [ "$queued" -lt 1 ] || [ "$queued" -gt 2 ]; then fail "$queued update requests for one notice"; fi
total=$(( $(sample left4me_health_updates_queued_total mp) + $(sample left4me_health_updates_queued_total mh) ))
[ "$total" = "$queued" ] || fail "left4me_health_updates_queued_total sums to $total, the journals say $queued"
journalctl --no-pager -o cat LEFT4ME_INSTANCE=mp LEFT4ME_INSTANCE=mh --since "@$t_notice" | grep -q 'started [0-9]* s ago' ||
    fail "no check said the later notices come too soon after the update's start"
note "Steam's notice from two servers every 5 s: one update run ($queued request(s)) $t_queued s after the first notice, later notices waited"
echo "notice-to-update-queued-s $t_queued" >> "$OUT/health-figures"
# A notice the checks saw after that start is still unhandled: one more
# request follows 20 s after it. Let it come and go before the next part.
sleep 10
until [ "$(systemctl show -P ActiveState left4me-update.service)" != activating ]; do sleep 0.5; done
rm -rf /run/systemd/system/left4me-update.service.d
systemctl daemon-reload
systemctl reset-failed left4me-update.service 2>/dev/null || true

# The map load and the stall start together, both 50 s of silence; only
# the load is announced in the game's output.
inv_mp=$(systemctl show -P InvocationID "$(unit mp)")
echo 50000 > "$(game_dir mp)/map-load"
echo 50000 > "$(game_dir mh)/stall"
t0=$(now_ms)
echo "changelevel c2m1_highway" > /run/left4me/mp.stdin
until grep -q 'stall: ' "$(game_dir mh)/logs/standin.log"; do
    [ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "mh did not stall"
    sleep 0.2
done
rm -f "$(game_dir mh)/stall"
grep -q 'loading map c2m1_highway for 50000 ms' "$(game_dir mp)/logs/standin.log" ||
    fail "mp did not start loading"
journalctl --no-pager -o cat -t srcds -u "$(unit mp)" | grep -qx -- '---- Host_Changelevel ----' ||
    fail "the engine's changelevel line is not in mp's journal"
wait_sample a2s_server_up mh 0 15
wait_sample a2s_server_up mp 0 15
wait_sample left4me_health_state mp 1 15 'state="changing-map"'
[ "$(sample left4me_health_consecutive_failures mp)" = 0 ] || fail "a map load counts failures"
# 4 failures: the stall is restarted 32-42 s after it began (plus TCG
# slack), before its 50 s are up; the counter comes from the restarted
# check (the record keeps it).
wait_sample left4me_health_restarts_total mh 1 80
t_restart=$(( $(now_ms) - t0 ))
# The load ended about 50 s after t0; mp answers again on the new map, the
# same run of the server, never restarted.
wait_sample a2s_server_up mp 1 30
[ "$(sample a2s_server_info mp 'map="c2m1_highway"')" = 1 ] || fail "mp's info does not show the new map"
[ "$(systemctl show -P InvocationID "$(unit mp)")" = "$inv_mp" ] || fail "mp was restarted during its map load"
[ "$(sample left4me_health_restarts_total mp)" = 0 ] || fail "mp counts a restart"
[ -z "$(health_events mp restart)" ] || fail "the check asked to restart the loading mp"
[ -z "$(health_events mp failed-query)" ] || fail "mp's check counted failed queries during its map load"
[ "$(health_events mp changing-map | wc -l)" = 1 ] || fail "mp's check did not log the map load once"
silent=$(sample left4me_health_query_failures_total mp)
[ "${silent:-0}" -ge 4 ] || fail "mp answered during its 50 s load ($silent failed queries)"
note "map load of 50 s: $silent unanswered queries, none counted, no restart; stall of 50 s: restart counted $t_restart ms after it began"
wait_sample a2s_server_up mh 1 60
[ "$(sample left4me_health_restarts_total mh)" = 1 ] || fail "mh restart counter not 1 after it answers again"
"$PROMTOOL" check metrics < "$MDIR/left4me_mh.prom" || fail "promtool check metrics finds problems after the restart"
echo "map-load-failed-queries $silent" >> "$OUT/health-figures"
echo "stall-to-restart-counted-ms $t_restart" >> "$OUT/health-figures"

health_cleanup mp
health_cleanup mh
