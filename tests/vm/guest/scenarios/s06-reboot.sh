# 6. After a reboot the enabled instance is back, mounted and answering, and
#    its upper data survived; the capped tmpfs mounts of the service user's
#    /run directories are there again, owned as at install.
# budget: 60
wait_state boot active 60
check_run_mounts "after the reboot"
is_mounted boot || fail "instance active after reboot but not mounted"
expect_a2s 27028 "survives reboot" 30
[ "$(cat "$(merged boot)/left4dead2/marker.txt")" = before-reboot ] ||
    fail "marker written before the reboot is gone"
[ "$(grep -c started "$(merged boot)/left4dead2/logs/standin.log")" -ge 2 ] ||
    fail "game log from before the reboot is gone"
stop_instance boot
systemctl disable "$(unit boot)"
