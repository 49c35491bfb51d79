# 1. Install: user, dirs, unit verifies, the request socket, package files.
# budget: 240
deb=$(local_deb)
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" ||
    fail "apt-get install $deb failed (guest is offline: a Depends missing from the image?)"
[ "$(dpkg-query -W -f '${Status}' left4me)" = "install ok installed" ] || fail "left4me not installed"

getent passwd left4me >/dev/null || fail "no left4me user"
getent group left4me >/dev/null || fail "no left4me group"
shell=$(getent passwd left4me | cut -d: -f7)
case $shell in */nologin|/bin/false) ;; *) fail "left4me has a login shell: $shell" ;; esac

[ -d "$STATE" ] || fail "$STATE missing"
[ "$(stat -c %U "$STATE")" = root ] || fail "$STATE not owned by root"
# Listed by root and the health checks only (dist/left4me.tmpfiles.in).
[ "$(stat -c '%U:%G %a' "$GENS")" = "root:left4me-health 751" ] || fail "$GENS is $(stat -c '%U:%G %a' "$GENS")"
runuser -u left4me -- ls "$GENS" >/dev/null 2>&1 && fail "the service user lists $GENS"
runuser -u left4me-health -- ls "$GENS" >/dev/null || fail "the health user cannot list $GENS"
for f in "$HELPER" /etc/left4me/host.env /usr/lib/systemd/system/left4me-server@.service \
         /usr/lib/systemd/system/left4me-overlay@.service /usr/lib/systemd/system/left4me-reset@.service \
         /usr/lib/systemd/system/l4d2-game.slice; do
    [ -e "$f" ] || fail "package file $f missing"
done
# No polkit grant (issue 18: polkit cannot see a job mode); the request
# socket instead, listening after the install, only for root and the group.
if ls /usr/share/polkit-1/rules.d/*left4me* /etc/polkit-1/rules.d/*left4me* >/dev/null 2>&1; then
    fail "a left4me polkit rule is installed"
fi
[ ! -e /usr/lib/systemd/system/left4me-update-now.service ] || fail "left4me-update-now.service is still shipped"
[ "$(systemctl is-active left4me-requests.socket)" = active ] ||
    fail "left4me-requests.socket is $(systemctl is-active left4me-requests.socket) after the install"
REQUESTS_SOCK=$(requests_sock)
[ -n "$REQUESTS_SOCK" ] || fail "left4me-requests.socket listens on no path"
[ "$(stat -c '%U:%G %a %F' "$REQUESTS_SOCK")" = "root:left4me 660 socket" ] ||
    fail "$REQUESTS_SOCK is $(stat -c '%U:%G %a %F' "$REQUESTS_SOCK" 2>&1)"
[ -L /usr/lib/systemd/system/sockets.target.wants/left4me-requests.socket ] ||
    fail "no sockets.target.wants link for left4me-requests.socket (it would not listen after a reboot)"
# Captured, not piped into grep -q: under pipefail an early-exiting grep makes
# the helper die of SIGPIPE and the check fail at random.
man=$("$HELPER" --generate man) && [ -n "$man" ] || fail "helper cannot generate its man page"

# verify instantiates the template; an ExecStart in merged/ (an older
# package's, or a drop-in's) only exists while mounted, so that one complaint
# is expected and nothing else.
verify=$(systemd-analyze verify --man=no /usr/lib/systemd/system/left4me-server@.service 2>&1 |
    grep -v 'runtime/[^/]*/merged/srcds_run is not executable' || true)
[ -z "$verify" ] || fail "systemd-analyze verify left4me-server@.service: $verify"
verify=$(systemd-analyze verify --man=no /usr/lib/systemd/system/left4me-overlay@.service \
    /usr/lib/systemd/system/left4me-reset@.service /usr/lib/systemd/system/left4me-requests.socket \
    /usr/lib/systemd/system/left4me-requests.service 2>&1) || fail "systemd-analyze verify root units: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify root units: $verify"
for u in left4me-server@probe.service left4me-overlay@probe.service left4me-reset@probe.service \
    left4me-enable@probe.service left4me-disable@probe.service left4me-requests.service left4me-requests.socket; do
    [ "$(systemctl show -P LoadState "$u")" = loaded ] || fail "$u does not load"
done

# All games together are capped (docs/unit.md, "Resources"): 90% of the
# guest's RAM and 16384 tasks, however many instances the user creates.
ram=$(awk '/^MemTotal:/ { print $2 * 1024 }' /proc/meminfo)
slice_max=$(systemctl show -P MemoryMax l4d2-game.slice)
[[ $slice_max =~ ^[0-9]+$ ]] && [ $((slice_max * 100 / ram)) -ge 89 ] && [ $((slice_max * 100 / ram)) -le 90 ] ||
    fail "l4d2-game.slice MemoryMax=$slice_max, expected 90% of $ram"
[ "$(systemctl show -P TasksMax l4d2-game.slice)" = 16384 ] || fail "l4d2-game.slice TasksMax=$(systemctl show -P TasksMax l4d2-game.slice), expected 16384"

# The update unit: loads, verifies, its user exists, its timer is off.
getent passwd left4me-update >/dev/null || fail "no left4me-update user"
verify=$(systemd-analyze verify --man=no /usr/lib/systemd/system/left4me-update.service \
    /usr/lib/systemd/system/left4me-update.timer 2>&1) || fail "systemd-analyze verify left4me-update: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify left4me-update: $verify"
[ "$(systemctl is-enabled left4me-update.timer)" = disabled ] || fail "left4me-update.timer is $(systemctl is-enabled left4me-update.timer)"
[ ! -e "$STATE/installation" ] || fail "a fresh install has $STATE/installation (generations live in installations/)"

install_standin
[ "$(gen_ids)" = "$(gen_current)" ] || fail "after the first import: generations '$(gen_ids | tr '\n' ' ')', current '$(gen_current)'"
note "installed $(dpkg-query -W -f '${Version}' left4me); stand-in (build 1000) in $(gen_dir)"
