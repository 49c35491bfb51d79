# 6 (before the reboot): an enabled instance with data in its upper layer.
# budget: 60
standard_overlays
remove_instance boot
make_instance boot 27028 "top base" "survives reboot"
systemctl enable "$(unit boot)" || fail "enable failed"
start_instance boot
expect_a2s 27028 "survives reboot"
runuser -u left4me -- sh -c "echo before-reboot > $(merged boot)/left4dead2/marker.txt" ||
    fail "cannot write the marker"
sync
