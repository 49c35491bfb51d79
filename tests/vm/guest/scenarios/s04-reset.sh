# 4. Write into the game dir, stop, reset (through left4me-reset@, as the
#    web app does), start: the write is gone, the instance's config is kept.
# budget: 80
standard_overlays
remove_instance four
make_instance four 27022 "base" "instance four"
start_instance four
expect_a2s 27022 "instance four"
runuser -u left4me -- sh -c "echo scratch > $(merged four)/left4dead2/scratch.txt" ||
    fail "the service user cannot write into the game dir through merged/"
[ -e "$STATE/runtime/four/upper/left4dead2/scratch.txt" ] || fail "write did not land in upper/"
systemctl stop "$(unit four)" || fail "stop failed"
# No waiting for the umount: the reset unit orders itself after it.
systemctl start --wait "$(reset_unit four)" || fail "systemctl start $(reset_unit four) failed"
is_mounted four && fail "reset ran but four is mounted"
start_instance four
expect_a2s 27022 "instance four"
[ ! -e "$(merged four)/left4dead2/scratch.txt" ] || fail "scratch.txt survived the reset"
[ "$(grep -c started "$(merged four)/left4dead2/logs/standin.log")" = 1 ] ||
    fail "the game log survived the reset"
grep -q '^L4D2_PORT=27022' "$STATE/instances/four/instance.env" || fail "instance.env lost"
[ -f "$STATE/instances/four/layer/left4dead2/cfg/server.cfg" ] || fail "instance layer lost"
stop_instance four
# Reset must refuse while the instance runs: the helper exits 15, the unit
# fails and says why, the game keeps running with its data.
start_instance four
runuser -u left4me -- sh -c "echo keep > $(merged four)/left4dead2/keep.txt"
since=$(date '+%Y-%m-%d %H:%M:%S')
if systemctl start --wait "$(reset_unit four)" 2>/dev/null; then fail "reset succeeded while four runs"; fi
[ "$(last_failure_code four)" = 15 ] ||
    fail "reset while running exited $(last_failure_code four), expected 15"
UNIT=$(reset_unit four) unit_journal four "$since" | grep -i 'mounted' ||
    fail "the reset unit's journal does not say the instance is mounted"
[ "$(active_state four)" = active ] || fail "the refused reset stopped the game"
[ -e "$(merged four)/left4dead2/keep.txt" ] || fail "the refused reset lost data"
# (Nothing to reset-failed: PID 1 unloads a failed reset unit, CollectMode=.)
rc=0; "$HELPER" reset four || rc=$?
[ "$rc" = 15 ] || fail "left4me-overlay reset while mounted exited $rc, expected 15"
stop_instance four
