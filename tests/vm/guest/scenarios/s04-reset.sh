# 4. Write into the game dir, stop, reset, start: the write is gone,
#    the instance's config is kept.
standard_overlays
remove_instance four
make_instance four 27022 "base" "instance four"
start_instance four
expect_a2s 27022 "instance four"
runuser -u left4me -- sh -c "echo scratch > $(merged four)/left4dead2/scratch.txt" ||
    fail "the service user cannot write into the game dir through merged/"
[ -e "$STATE/runtime/four/upper/left4dead2/scratch.txt" ] || fail "write did not land in upper/"
stop_instance four
"$HELPER" reset four || fail "left4me-overlay reset four failed"
start_instance four
expect_a2s 27022 "instance four"
[ ! -e "$(merged four)/left4dead2/scratch.txt" ] || fail "scratch.txt survived the reset"
[ "$(grep -c started "$(merged four)/left4dead2/logs/standin.log")" = 1 ] ||
    fail "the game log survived the reset"
grep -q '^L4D2_PORT=27022' "$STATE/instances/four/instance.env" || fail "instance.env lost"
[ -f "$STATE/instances/four/layer/left4dead2/cfg/server.cfg" ] || fail "instance layer lost"
stop_instance four
# Reset must refuse while mounted (exit 15).
start_instance four
rc=0; "$HELPER" reset four || rc=$?
[ "$rc" = 15 ] || fail "reset while mounted exited $rc, expected 15"
stop_instance four
