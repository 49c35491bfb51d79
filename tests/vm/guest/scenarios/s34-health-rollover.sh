# 34. Health: the when-empty update restart (docs/health.md, "Update
#     restarts"). A generation switch is faked by hand, without the update
#     service (s41 runs that end to end): a copy of the current generation
#     under another id, and installations/current rewritten by rename(2) as
#     the helper does. The check, as left4me inside its sandbox, sees the
#     new current through its read-only bind of installations/; it restarts
#     the empty instance onto the new generation at once, outside the
#     restart budget, and leaves the one with a human player until only bots
#     are left. A broken current stops nothing and is warned about once.
# budget: 180
. ./health-lib.sh
standard_overlays

# Generations: `generation list` migrates the stand-in's installation/ if
# this host has none yet; the scenario puts the legacy layout back at the
# end so later scenarios find what they expect.
migrated_here=0
[ -e "$STATE/installations/current" ] || migrated_here=1
"$HELPER" generation list || fail "left4me-overlay generation list failed"
old=$(cat "$STATE/installations/current") || fail "no installations/current after generation list"
new="${old}-s34"
note "current generation: $old"

set_current() {
    printf '%s\n' "$1" > "$STATE/installations/.current-s34"
    chmod 0644 "$STATE/installations/.current-s34"
    mv -f "$STATE/installations/.current-s34" "$STATE/installations/current"
}

s34_cleanup() {
    health_cleanup re
    health_cleanup rf
    set_current "$old"
    rm -rf "${STATE:?}/installations/$new"
    if [ "$migrated_here" = 1 ]; then
        rm -rf "${STATE:?}/installations"
        install_standin
    fi
}

settings=(GRACE_SEC=0 INTERVAL_SEC=0.5 TIMEOUT_SEC=1)
health_instance re 27036 "${settings[@]}"
health_instance rf 27037 "${settings[@]}"
start_instance re
start_instance rf
# One human and two bots on rf (Source counts bots among the players).
printf '1 2\n' > "$(game_dir rf)/players"
for i in re rf; do
    grep -qx "LEFT4ME_GENERATION=\"$old\"" "$STATE/runtime/.left4me/$i.env" ||
        fail "$i's environment copy does not name generation $old: $(cat "$STATE/runtime/.left4me/$i.env")"
    wait_health_active "$i"
    wait_health_checks "$i" 3 30
    [ "$(hfield "$i" generation)" = "$old" ] || fail "$i's health record names generation '$(hfield "$i" generation)', not $old"
done
q=$(left4me-health query 27037) || fail "left4me-health query 27037 failed"
[[ $q == *"3/8 players (2 bots)"* ]] || fail "the stand-in does not report rf's 3 players, 2 of them bots: $q"
inv_re=$(systemctl show -P InvocationID "$(unit re)")
inv_rf=$(systemctl show -P InvocationID "$(unit rf)")

# The switch. A copy of a committed generation keeps root's owner and modes.
cp -a "$STATE/installations/$old" "$STATE/installations/$new"
t_switch=$(now_ms)
set_current "$new"

# re is empty: restarted onto the new generation.
deadline=$(( t_switch + 60000 ))
until [ "$(systemctl show -P InvocationID "$(unit re)")" != "$inv_re" ] && [ "$(active_state re)" = active ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "re not restarted 60 s after the switch (health: $(health_events re | tail -n 3))"
    sleep 0.2
done
t_restarted=$(now_ms)
event=$(FORMAT=short-unix health_events re rollover)
[ "$(printf '%s\n' "$event" | grep -c .)" = 1 ] || fail "expected one rollover journal entry for re, got: $event"
[[ $event == *"restarting left4me-server@re.service onto generation $new (from $old)"* ]] ||
    fail "the rollover entry does not name both generations: $event"
[[ $event == *"no human player (0 players, 0 bots)"* ]] || fail "the rollover entry does not say why: $event"
journalctl --no-pager -o verbose LEFT4ME_INSTANCE=re HEALTH_ACTION=rollover |
    grep -qx "    HEALTH_GENERATION_TO=$new" || fail "the rollover entry lacks HEALTH_GENERATION_TO=$new"
t_event=$(printf '%s\n' "$event" | cut -d' ' -f1)
ms_event=$(awk -v a="$t_switch" -v b="$t_event" 'BEGIN{printf "%d", b * 1000 - a}')
note "re: rollover asked for $ms_event ms after the switch (interval 0.5 s), restarted and active after $(( t_restarted - t_switch )) ms"
echo "rollover-request-ms $ms_event" >> "$OUT/health-figures"
grep -qx "LEFT4ME_GENERATION=\"$new\"" "$STATE/runtime/.left4me/re.env" ||
    fail "re's environment copy does not name $new after the restart"
st=$("$HELPER" status re) || fail "left4me-overlay status re failed"
[[ $st == *"  generation: $new (current)"* ]] ||
    fail "left4me-overlay status re does not show re on the current generation $new: $st"
expect_a2s 27036 "health re"
wait_health_active re
wait_health_checks re 2 30
[ "$(hfield re generation)" = "$new" ] || fail "re's new health record names '$(hfield re generation)'"
[ "$(hrestarts re)" = 0 ] || fail "the rollover spent the restart budget: $(hrestarts re) restarts"
json=$(runuser -u left4me -- left4me-health status re --json) || fail "left4me-health status re --json failed"
for want in "\"from\": \"$old\"" "\"to\": \"$new\"" '"confirmed": true' '"update_restart": "when-empty"'; do
    [[ $json == *"$want"* ]] || fail "status --json lacks $want: $json"
done
shown=$(left4me-health status re)
echo "$shown"
[[ $shown == *"rollover     "*"restarted from $old onto $new, no human player on (0 players, 0 bots)"* ]] ||
    fail "status does not show the rollover"

# rf has a human: not restarted, the wait logged once.
wait_health_checks rf $(( $(hfield rf checks) + 6 )) 30
[ "$(systemctl show -P InvocationID "$(unit rf)")" = "$inv_rf" ] || fail "rf was restarted with a human player on"
[ -z "$(health_events rf rollover)" ] || fail "rf has a rollover entry with a human player on"
waits=$(health_events rf | grep -c "generation $new is current, rf runs $old: restarting it once no human player is on (1 now)" || true)
[ "$waits" = 1 ] || fail "expected the wait logged once for rf, found $waits times"

# A broken current stops the move and is warned about once.
printf 'not a generation\n' > "$STATE/installations/.current-s34"
mv -f "$STATE/installations/.current-s34" "$STATE/installations/current"
wait_health_checks rf $(( $(hfield rf checks) + 4 )) 30
warns=$(health_events rf | grep -c 'installations/current does not name a generation' || true)
[ "$warns" = 1 ] || fail "expected one warning about the malformed current, found $warns"
set_current "$new"

# Only bots left: now rf moves too.
printf '0 2\n' > "$(game_dir rf)/players"
deadline=$(( $(now_ms) + 60000 ))
until [ "$(systemctl show -P InvocationID "$(unit rf)")" != "$inv_rf" ] && [ "$(active_state rf)" = active ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "rf not restarted 60 s after only bots were left (health: $(health_events rf | tail -n 3))"
    sleep 0.2
done
[[ $(health_events rf rollover) == *"no human player (2 players, 2 bots)"* ]] ||
    fail "rf's rollover entry: $(health_events rf rollover)"
grep -qx "LEFT4ME_GENERATION=\"$new\"" "$STATE/runtime/.left4me/rf.env" || fail "rf does not run $new after its restart"
wait_health_active rf
wait_health_checks rf 2 30
[ "$(health_events rf rollover | wc -l)" = 1 ] || fail "rf rolled over more than once"
note "rf: waited while a human was on, moved once only bots were left"
s34_cleanup
