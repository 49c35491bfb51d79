# 10. Upgrade with an instance running: it keeps running (same main PID,
#     still answering); remove keeps the data. And the upgrade from a package
#     without the capped /run mounts (issue 18) with an instance and its
#     health check running: the mounts are made, the check restarted into
#     them, the game left alone. That package's check runs as the service
#     user, as before the health checks' own user: the upgrade restarts it
#     as left4me-health with its record kept, and a reinstall removes the
#     metrics files the service user owns.
# budget: 400
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

# The package as it was before the capped /run mounts: the same files
# without the two mount units, their boot links and the health unit's
# RequiresMountsFor= of them, installed on a host that never had them.
rm -rf /tmp/repack/old; dpkg-deb -R "$deb" /tmp/repack/old
units=/tmp/repack/old/usr/lib/systemd/system
if [ ! -f "$units/left4me-health@.service" ] || ! ls "$units"/run-left4me*.mount >/dev/null; then
    fail "the package's units are not where this scenario removes the mounts from ($units)"
fi
rm -f "$units"/run-left4me*.mount "$units"/local-fs.target.wants/run-left4me*
sed -i '/^RequiresMountsFor=\/run\/left4me-health/d' "$units/left4me-health@.service"
sed -i -e 's/^User=left4me-health$/User=left4me/' -e 's/^Group=left4me-health$/Group=left4me/' "$units/left4me-health@.service"
grep -qx 'User=left4me' "$units/left4me-health@.service" || fail "the package without the mounts does not run its check as left4me"
! grep -q '^RequiresMountsFor=/run/left4me-health' "$units/left4me-health@.service" || fail "the mounts are still required in the package without them"
sed -i "s/^Version: .*/Version: ${ver}~nomounts/" /tmp/repack/old/DEBIAN/control
sed -i '/run-left4me/d' /tmp/repack/old/DEBIAN/md5sums
dpkg-deb -b /tmp/repack/old /tmp/repack/old.deb >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/repack/old.deb || fail "install of the package without the mounts failed"
for d in /run/left4me-health /run/left4me-metrics; do
    systemctl stop "$(systemd-escape -p --suffix=mount "$d")" || fail "cannot unmount $d"
done
systemd-tmpfiles --create left4me.conf
start_instance ten
expect_a2s 27027 "instance ten"
pid=$(systemctl show -P MainPID "$(unit ten)")
wait_until() { local t0; t0=$(now_ms); until eval "$1"; do [ $(( $(now_ms) - t0 )) -lt 30000 ] || fail "$2"; sleep 0.2; done; }
wait_until '[ -s /run/left4me-health/ten/status.json ]' "no health record on /run's own directory"
[ "$(stat -c %U /run/left4me-health/ten/status.json)" = left4me ] || fail "the old package's check did not write its record as left4me"
[ "$(findmnt -n -o TARGET -T /run/left4me-health/ten)" = /run ] || fail "the package without the mounts has a mount at /run/left4me-health"
hpid=$(systemctl show -P MainPID left4me-health@ten.service)
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "$deb" ||
    fail "upgrade from the package without the mounts failed"
check_run_mounts "after the upgrade from a package without them"
[ "$(systemctl show -P MainPID "$(unit ten)")" = "$pid" ] || fail "the upgrade that made the mounts restarted the game"
# shellcheck disable=SC2016 # evaluated by wait_until
wait_until '[ "$(systemctl show -P ActiveState left4me-health@ten.service)" = active ] && [ "$(systemctl show -P MainPID left4me-health@ten.service)" != "$hpid" ]' \
    "the health check was not restarted by the upgrade that made the mounts"
wait_until '[ -s /run/left4me-health/ten/status.json ]' "no health record in the new mount"
[ "$(findmnt -n -o TARGET -T /run/left4me-health/ten/status.json)" = /run/left4me-health ] || fail "the health record is not on the capped mount"
[ "$(stat -c %U:%G /run/left4me-health/ten)" = left4me-health:left4me-health ] ||
    fail "the record dir is $(stat -c %U:%G /run/left4me-health/ten) after the upgrade, not the health user's"
wait_until '[ "$(stat -c %U /run/left4me-health/ten/status.json)" = left4me-health ]' "the upgraded check does not write its record as left4me-health"
# A record dir the service user owns, as a package with the mounts whose
# checks ran as left4me left it: the check's next start gives it to
# left4me-health (RuntimeDirectory= chowns a preserved directory).
systemctl stop left4me-health@ten.service
chown -R left4me:left4me /run/left4me-health/ten
systemctl start left4me-health@ten.service || fail "the health check does not start on a record dir of left4me's"
[ "$(stat -c %U:%G /run/left4me-health/ten /run/left4me-health/ten/status.json | sort -u)" = left4me-health:left4me-health ] ||
    fail "the record dir of left4me's was not given to the health user: $(ls -la /run/left4me-health/ten)"
# A metrics file the service user owns, as the old package's checks left
# them in the mounted directory: the postinst removes it.
install -o left4me -g left4me -m 0644 /dev/null /run/left4me-metrics/left4me_stale.prom
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall "$deb" || fail "reinstall failed"
[ ! -e /run/left4me-metrics/left4me_stale.prom ] || fail "the postinst left a metrics file of the service user's"
wait_until '[ "$(stat -c %U /run/left4me-metrics/left4me_ten.prom 2>/dev/null)" = left4me-health ]' "the check's metrics are not the health user's after the reinstall"
note "upgrade from a package without the capped /run mounts: mounted, health check $hpid restarted as $(systemctl show -P MainPID left4me-health@ten.service), game $pid kept"
expect_a2s 27027 "instance ten"
stop_instance ten
remove_instance ten
