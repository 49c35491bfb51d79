# 8. As the left4me user (polkit over D-Bus): can start/stop
#    left4me-server@x, start the update, cannot start any other unit.
#    Invented names leave no unit loaded in PID 1 (CollectMode=), and a
#    start that fails leaves its reason for the group in
#    runtime/x/last-failure.json.
# budget: 300
standard_overlays
remove_instance x
make_instance x 27024 "base" "polkit x"
# Canaries: an unrelated unit, and one whose name only starts like ours.
for c in left4me-vm-canary left4me-server-canary; do
    printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n' \
        > "/run/systemd/system/$c.service"
done
systemctl daemon-reload
as_user() { runuser -u left4me -- "$@"; }

as_user systemctl start "$(unit x)" || fail "left4me may not start $(unit x)"
wait_state x active 30
expect_a2s 27024 "polkit x"
as_user systemctl restart "$(unit x)" || fail "left4me may not restart $(unit x)"
wait_state x active 30
as_user systemctl stop "$(unit x)" || fail "left4me may not stop $(unit x)"
wait_unmounted x 15
as_user systemctl start --wait "$(reset_unit x)" || fail "left4me may not start $(reset_unit x)"
# The root half is not the user's to drive: it comes and goes with the server.
for verb in start stop restart; do
    if as_user systemctl "$verb" "$(overlay_unit x)" 2>/dev/null; then fail "left4me could $verb $(overlay_unit x)"; fi
done
is_mounted x && fail "x got mounted by a refused start of $(overlay_unit x)"
for verb in stop restart; do
    if as_user systemctl "$verb" "$(reset_unit x)" 2>/dev/null; then fail "left4me could $verb $(reset_unit x)"; fi
done

# "Update now": left4me may start the proxy left4me-update-now, which queues
# the update unit; not the update unit itself, and no stop or restart.
# No Steam account is set up here (LEFT4ME_STEAM_LOGIN=account, the default,
# and no steam-login credential), so the run fails, and must leave nothing.
cur=$(gen_current)
systemctl reset-failed left4me-update.service 2>/dev/null || true
update_mark
if as_user systemctl start --no-block left4me-update.service 2>/dev/null; then fail "left4me could start left4me-update.service itself"; fi
as_user systemctl start left4me-update-now.service || fail "left4me may not start left4me-update-now.service"
deadline=$(( $(now_ms) + 60000 ))
until [ "$(systemctl show -P ActiveState left4me-update.service)" = failed ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "left4me-update.service is $(systemctl show -P ActiveState left4me-update.service) 60 s after the start"
    sleep 0.2
done
missing="LEFT4ME_STEAM_LOGIN=account, but the unit has no credentials"
grep -qF "$missing" <<<"$(update_journal)" || fail "the failed update does not name the missing credential: $(update_journal | tail -n 5)"
[ "$(gen_current)" = "$cur" ] && [ ! -e "$GENS/.next" ] || fail "the failed update left .next/ or moved current"
note "update without a Steam account, started as left4me: failed, $(update_journal | grep -m1 -F "$missing")"
for verb in stop restart; do
    if as_user systemctl "$verb" left4me-update.service 2>/dev/null; then fail "left4me could $verb left4me-update.service"; fi
    if as_user systemctl "$verb" left4me-update-now.service 2>/dev/null; then fail "left4me could $verb left4me-update-now.service"; fi
done
if as_user systemctl start left4me-update.timer 2>/dev/null; then fail "left4me could start left4me-update.timer"; fi
systemctl reset-failed left4me-update.service

# Since systemd 257 polkit sees a transient unit's name: every name the rule
# grants must have a unit file, so systemd refuses a transient unit of that
# name instead of running the user's command as root.
rm -f /tmp/left4me-transient-probe
for u in left4me-server@probe left4me-reset@probe left4me-enable@probe left4me-disable@probe left4me-overlay@probe left4me-update left4me-update-now; do
    if as_user systemd-run --no-ask-password --quiet --unit="$u.service" /bin/sh -c 'id -u > /tmp/left4me-transient-probe' 2>/tmp/transient.err; then
        fail "left4me could start a transient $u.service"
    fi
    note "transient $u.service as left4me refused: $(head -n1 /tmp/transient.err)"
done
sleep 1
[ ! -e /tmp/left4me-transient-probe ] || fail "a transient unit ran: uid $(cat /tmp/left4me-transient-probe)"
for c in left4me-vm-canary left4me-server-canary; do
    if as_user systemctl start "$c.service" 2>/tmp/polkit.err; then
        fail "left4me could start $c.service"
    fi
    note "start $c.service as left4me refused: $(cat /tmp/polkit.err)"
    [ "$(systemctl show -P ActiveState "$c.service")" = inactive ] || fail "$c.service was started"
done
if as_user systemctl stop dbus.service 2>/dev/null; then fail "left4me could stop dbus.service"; fi
rm -f /run/systemd/system/left4me-vm-canary.service /run/systemd/system/left4me-server-canary.service
systemctl daemon-reload

# Every template the rule grants, with names no instance has: each start
# fails, and nothing of them stays loaded in PID 1 (without CollectMode=
# each one would stay `failed`, up to systemd's limit of loaded units).
for i in 1 2 3 4 5; do
    if as_user systemctl start "left4me-server@inv$i.service" 2>/dev/null; then fail "left4me-server@inv$i started"; fi
    for t in reset enable disable; do
        as_user systemctl start --wait "left4me-$t@inv$i.service" 2>/dev/null && [ "$t" != disable ] &&
            fail "left4me-$t@inv$i succeeded"
    done
done
sleep 1
left=$(systemctl list-units --all --no-legend --plain 'left4me-*@inv*' | awk '{ print $1 " " $3 }')
[ -z "$left" ] || fail "units of invented names stay loaded: $left"
[ ! -e "$STATE/runtime/inv1" ] || fail "an invented name left $STATE/runtime/inv1"
# A real instance whose start fails: the overlay unit is gone too, and the
# helper's reason is there for the group, with its exit code.
echo 'L4D2_ARGS="-debug"' >> "$STATE/instances/x/instance.env"
if as_user systemctl start "$(unit x)" 2>/dev/null; then fail "x started with a refused flag"; fi
[ -z "$(systemctl list-units --all --no-legend --plain "$(overlay_unit x)")" ] || fail "the failed overlay unit of x stays loaded"
why=$(as_user cat "$STATE/runtime/x/last-failure.json") || fail "left4me cannot read runtime/x/last-failure.json"
if ! grep -q "\"exit_code\":11" <<< "$why" || ! grep -q -- -debug <<< "$why"; then fail "last-failure.json does not say why: $why"; fi
note "invented names: nothing loaded; x's failed start: $why"
# At most 256 instances enabled for boot: renaming its instance dir between
# enables, the user could otherwise enable names without end (three units
# each at the next boot). 256 links of other names: x is refused, exit 15.
sed -i '/^L4D2_ARGS="-debug"$/d' "$STATE/instances/x/instance.env"
w=/etc/systemd/system/multi-user.target.wants
mkdir -p "$w"
for i in $(seq 1 256); do ln -sf /usr/lib/systemd/system/left4me-server@.service "$w/left4me-server@cap$i.service"; done
if as_user systemctl start --wait left4me-enable@x.service 2>/dev/null; then fail "a 257th instance could be enabled"; fi
[ ! -e "$w/left4me-server@x.service" ] || fail "x was enabled past the limit"
rm -f "$w"/left4me-server@cap*.service
as_user systemctl start --wait left4me-enable@x.service || fail "x cannot be enabled below the limit"
[ -L "$w/left4me-server@x.service" ] || fail "enable@x left no link"
as_user systemctl start --wait left4me-disable@x.service || fail "x cannot be disabled"
# The enables skip the reload (--no-reload, by design); reload once here so
# later scenarios' systemctl calls print no "changed on disk" warning.
systemctl daemon-reload
note "256 enabled instances: the next is refused, below that it is enabled"
remove_instance x
