# 10. Upgrade with an instance running: it keeps running (same main PID,
#     still answering); remove keeps the data.
# budget: 100
standard_overlays
deb=$(local_deb)
remove_instance ten
make_instance ten 27027 "base" "instance ten"
start_instance ten
expect_a2s 27027 "instance ten"
pid=$(systemctl show -P MainPID "$(unit ten)")

# A newer version of the same package: repack with a bumped version.
rm -rf /tmp/repack; mkdir /tmp/repack
dpkg-deb -R "$deb" /tmp/repack/pkg
ver=$(dpkg-deb -f "$deb" Version)
sed -i "s/^Version: .*/Version: ${ver}+vmtest1/" /tmp/repack/pkg/DEBIAN/control
dpkg-deb -b /tmp/repack/pkg /tmp/repack/new.deb >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/repack/new.deb ||
    fail "upgrade to ${ver}+vmtest1 failed"
[ "$(dpkg-query -W -f '${Version}' left4me)" = "${ver}+vmtest1" ] || fail "upgrade did not take"
[ "$(active_state ten)" = active ] || fail "instance not active after upgrade"
[ "$(systemctl show -P MainPID "$(unit ten)")" = "$pid" ] || fail "instance restarted by the upgrade"
is_mounted ten || fail "overlay gone after upgrade"
expect_a2s 27027 "instance ten"

stop_instance ten
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q left4me || fail "apt-get remove failed"
[ -f "$STATE/instances/ten/instance.env" ] || fail "remove deleted instance.env"
[ -f "$STATE/instances/ten/layer/left4dead2/cfg/server.cfg" ] || fail "remove deleted the instance layer"
[ -x "$(gen_dir)/srcds_run" ] || fail "remove deleted the current generation"
[ -d "$STATE/runtime/ten/upper/left4dead2/logs" ] || fail "remove deleted the upper layer"
getent passwd left4me >/dev/null || fail "remove deleted the left4me user (files it owns remain)"

# Back to the version under test for the rest of the run.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "$deb" ||
    fail "reinstall after remove failed"
start_instance ten
expect_a2s 27027 "instance ten"
stop_instance ten
remove_instance ten
