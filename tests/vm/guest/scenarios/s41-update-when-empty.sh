# 41. Restart policies after an update (docs/updates.md), with two
#     instances, one with players (the stand-in's left4dead2/players file)
#     and one empty:
#     when-empty: the empty one is restarted onto the new generation by its
#     health check; the busy one keeps its generation until only bots
#     are left, then moves too;
#     now: both are restarted at once, players or not;
#     never: neither moves.
# budget: 240
. ./health-lib.sh
standard_overlays
install_fake_steamcmd
trap restore_host_env EXIT
health_instance wa 27045 GRACE_SEC=0 INTERVAL_SEC=0.5 TIMEOUT_SEC=1
health_instance wb 27046 GRACE_SEC=0 INTERVAL_SEC=0.5 TIMEOUT_SEC=1
invocation() { systemctl show -P InvocationID "$(unit "$1")"; }
players() { echo "$2" > "$(game_dir "$1")/players"; }
build_of() { sed -n 's/^[[:space:]]*"buildid"[[:space:]]*"\([0-9]*\)".*/\1/p' "$GENS/$1/steamapps/appmanifest_222860.acf"; }
# wait_generation NAME GEN TIMEOUT_S: the instance runs again, on GEN.
wait_generation() {
    local deadline=$(( $(now_ms) + $3 * 1000 ))
    until [ "$(active_state "$1")" = active ] && [ "$(env_generation "$1" 2>/dev/null)" = "$2" ] && is_mounted "$1"; do
        [ "$(now_ms)" -lt "$deadline" ] ||
            fail "$1 not running on $2 after $3 s (state $(active_state "$1"), generation '$(env_generation "$1" 2>/dev/null)')"
        sleep 0.2
    done
}
update_to_next() {
    fake_steamcmd_conf $(( $(build_of "$(gen_current)") + 1 )) ok
    run_update || fail "left4me-update.service failed: $(update_journal | tail -n 20)"
}

set_host_env LEFT4ME_UPDATE_RESTART=when-empty
start_instance wa; start_instance wb
players wa "3 1"
wait_health_checks wa 2 30; wait_health_checks wb 2 30
old=$(gen_current)
inv_a=$(invocation wa) inv_b=$(invocation wb)
t0=$(now_ms)
update_to_next
new=$(gen_current)
wait_generation wb "$new" 30
t_empty=$(( $(now_ms) - t0 ))
expect_a2s 27046 "health wb"
# The busy one: still the same run, on the old generation, for a good many
# checks after the empty one moved.
before=$(hfield wa checks)
wait_health_checks wa $(( before + 10 )) 30
[ "$(invocation wa)" = "$inv_a" ] || fail "wa (3 players) was restarted"
[ "$(status_field wa generation)" = "$old" ] || fail "wa left its generation $old with players on"
[ "$(invocation wb)" != "$inv_b" ] || fail "wb moved without a restart?"
note "when-empty: wb (empty) on $new after ${t_empty} ms; wa (3 players, 1 bot) stays on $old"
# Bots are not players: only bots left counts as empty.
t0=$(now_ms)
players wa "0 2"
wait_generation wa "$new" 30
t_busy=$(( $(now_ms) - t0 ))
expect_a2s 27045 "health wa"
note "when-empty: wa moved to $new ${t_busy} ms after only 2 bots were left"
health_events wa | tail -n 5
health_events wb | tail -n 5

set_host_env LEFT4ME_UPDATE_RESTART=now
players wa 5
inv_a=$(invocation wa) inv_b=$(invocation wb)
update_to_next
newer=$(gen_current)
wait_generation wa "$newer" 30; wait_generation wb "$newer" 30
[ "$(invocation wa)" != "$inv_a" ] && [ "$(invocation wb)" != "$inv_b" ] || fail "now: not both restarted"
expect_a2s 27045 "health wa"; expect_a2s 27046 "health wb"
note "now: both restarted onto $newer, 5 players or not"

set_host_env LEFT4ME_UPDATE_RESTART=never
players wa 0
inv_a=$(invocation wa) inv_b=$(invocation wb)
update_to_next
newest=$(gen_current)
before=$(hfield wb checks)
wait_health_checks wb $(( before + 10 )) 30
for i in wa wb; do
    [ "$(status_field "$i" generation)" = "$newer" ] || fail "never: $i left $newer"
done
[ "$(invocation wa)" = "$inv_a" ] && [ "$(invocation wb)" = "$inv_b" ] || fail "never: an instance was restarted"
note "never: both empty, both stay on $newer while $newest is current"
echo "s41 when-empty: empty instance on the new generation ${t_empty} ms after the update started; busy one ${t_busy} ms after it emptied" >> "$OUT/update-figures"
health_cleanup wa; health_cleanup wb
