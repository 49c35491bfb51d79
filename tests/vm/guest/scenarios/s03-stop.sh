# 3. Stop: unmounted on the first try (by the overlay unit, after the
#    server's stop returned), no mount namespace left holding it.
# budget: 80
standard_overlays
remove_instance three
make_instance three 27021 "base" "instance three"
start_instance three
expect_a2s 27021 "instance three"
since=$(date '+%Y-%m-%d %H:%M:%S')
stop_instance three
holders=$(ns_holders three)
[ -z "$holders" ] || fail "mount namespaces of PIDs $holders still hold $(merged three)"
[ "$(systemctl show -P Result "$(unit three)")" = success ] ||
    fail "stop result is $(systemctl show -P Result "$(unit three)"), not success"
[ "$(systemctl show -P Result "$(overlay_unit three)")" = success ] ||
    fail "overlay unit stop result is $(systemctl show -P Result "$(overlay_unit three)"), not success"
[ "$(systemctl show -P ActiveState "$(overlay_unit three)")" = inactive ] || fail "overlay unit still active"
[ ! -e "$STATE/runtime/.left4me/three.env" ] || fail "umount left the game environment copy behind"
if { unit_journal three "$since"; UNIT=$(overlay_unit three) unit_journal three "$since"; } | grep -Ei 'busy|retry'; then
    fail "the umount did not succeed on the first try (journal above)"
fi
grep -q 'SIGINT: shutting down' "$STATE/runtime/three/upper/left4dead2/logs/standin.log" ||
    fail "the game was not stopped with SIGINT"
