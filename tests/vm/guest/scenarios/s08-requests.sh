# 8. As the left4me user, through root's request server (the web app's
#    path): start, restart, stop, reset of left4me-server@x and the update
#    work; PID 1 refuses the user every job itself (the root half, the
#    update unit, its timer, transient units, any other unit). Invented
#    names through every verb leave no unit loaded in PID 1 (CollectMode=),
#    a refused start leaves its reason for the group in
#    runtime/x/last-failure.json, and at most 256 instances are enabled.
# budget: 450
standard_overlays
remove_instance x
make_instance x 27024 "base" "requests x"
# Canaries: an unrelated unit, and one whose name only starts like ours.
for c in left4me-vm-canary left4me-server-canary; do
    printf '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n' \
        > "/run/systemd/system/$c.service"
done
systemctl daemon-reload
as_user() { runuser -u left4me -- "$@"; }
# refused_by_pid1 CMD...: CMD (a systemctl or systemd-run as left4me) fails
# with PID 1's authorisation error, nothing else.
refused_by_pid1() {
    local out
    if out=$(as_user "$@" 2>&1); then fail "left4me could: $*"; fi
    denied "$out" || fail "'$*' as left4me failed otherwise than refused: $out"
}

request_ok "start x"
[ "$(active_state x)" = active ] || fail "'start x' answered ok, x is $(active_state x)"
expect_a2s 27024 "requests x"
request_ok "restart x"
[ "$(active_state x)" = active ] || fail "'restart x' answered ok, x is $(active_state x)"
request_ok "stop x"
wait_unmounted x 15
request_ok "reset x"
# The root half is not the user's to drive, nor anything else of ours
# directly: PID 1 refuses the user every job.
for verb in start stop restart; do
    refused_by_pid1 systemctl --no-ask-password "$verb" "$(overlay_unit x)"
    refused_by_pid1 systemctl --no-ask-password "$verb" "$(unit x)"
done
is_mounted x && fail "x got mounted by a refused start of $(overlay_unit x)"
refused_by_pid1 systemctl --no-ask-password start "$(reset_unit x)"

# "Update now": the `update` request queues the update unit, once per
# 15 min; the user may not start, stop or restart it itself, nor its timer. No Steam account is
# set up here (LEFT4ME_STEAM_LOGIN=account, the default, and no steam-login
# credential), so the run fails, and must leave nothing.
cur=$(gen_current)
systemctl reset-failed left4me-update.service 2>/dev/null || true
update_mark
for verb in start stop restart; do refused_by_pid1 systemctl --no-ask-password "$verb" left4me-update.service; done
refused_by_pid1 systemctl --no-ask-password start left4me-update.timer
request_ok update
deadline=$(( $(now_ms) + 60000 ))
until [ "$(systemctl show -P ActiveState left4me-update.service)" = failed ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "left4me-update.service is $(systemctl show -P ActiveState left4me-update.service) 60 s after the request"
    sleep 0.2
done
missing="LEFT4ME_STEAM_LOGIN=account, but the unit has no credentials"
grep -qF "$missing" <<<"$(update_journal)" || fail "the failed update does not name the missing credential: $(update_journal | tail -n 5)"
{ [ "$(gen_current)" = "$cur" ] && [ ! -e "$GENS/.next" ]; } || fail "the failed update left .next/ or moved current"
note "update without a Steam account, asked for as left4me: failed, $(update_journal | grep -m1 -F "$missing")"
# A request may start the update once per 15 min of its last start.
out=$(request update) && fail "a second update request at once was answered ok"
[[ $out == "error 15 "*"once per 15 min"* ]] || fail "a second update request at once: $out"
[ "$(systemctl show -P ActiveState left4me-update.service)" = failed ] || fail "the refused update request started the update"
note "update asked for again at once: $out"
systemctl reset-failed left4me-update.service

# No transient unit either, of any name (systemd 257's polkit sees a
# transient unit's name; with no grant the name does not matter).
rm -f /tmp/left4me-transient-probe
for u in left4me-server@probe left4me-reset@probe left4me-overlay@probe left4me-update left4me-requests; do
    refused_by_pid1 systemd-run --no-ask-password --quiet --unit="$u.service" /bin/sh -c 'id -u > /tmp/left4me-transient-probe'
done
sleep 1
[ ! -e /tmp/left4me-transient-probe ] || fail "a transient unit ran: uid $(cat /tmp/left4me-transient-probe)"
for c in left4me-vm-canary left4me-server-canary; do
    refused_by_pid1 systemctl --no-ask-password start "$c.service"
    [ "$(systemctl show -P ActiveState "$c.service")" = inactive ] || fail "$c.service was started"
done
refused_by_pid1 systemctl --no-ask-password stop dbus.service
note "PID 1 refused left4me: the overlay, server, reset and update units, the timer, transient units, the canaries, dbus"
rm -f /run/systemd/system/left4me-vm-canary.service /run/systemd/system/left4me-server-canary.service
systemctl daemon-reload

# Every verb with names no instance has, in one client (one connection
# each): start, restart, reset and enable fail, stop and disable have
# nothing to do; nothing of them stays loaded in PID 1 (without
# CollectMode= each would stay `failed`, up to systemd's limit of loaded
# units).
lines=()
for i in 1 2 3 4 5; do
    for verb in start stop restart reset enable disable; do lines+=("$verb inv$i"); done
done
answers=$(request "${lines[@]}") && fail "every request of an invented name was answered ok"
mapfile -t got <<<"$answers"
[ "${#got[@]}" = "${#lines[@]}" ] || fail "${#lines[@]} requests, ${#got[@]} answers: $answers"
for k in "${!lines[@]}"; do
    case ${lines[k]} in
        stop*|disable*) [ "${got[k]}" = ok ] || fail "'${lines[k]}': ${got[k]}" ;;
        *) [[ ${got[k]} == "error "* ]] || fail "'${lines[k]}' of an invented name: ${got[k]}" ;;
    esac
done
note "invented names: e.g. 'start inv1': ${got[0]}"
sleep 1
left=$(systemctl list-units --all --no-legend --plain 'left4me-*@inv*' | awk '{ print $1 " " $3 }')
[ -z "$left" ] || fail "units of invented names stay loaded: $left"
[ ! -e "$STATE/runtime/inv1" ] || fail "an invented name left $STATE/runtime/inv1"
# A real instance whose start fails: the overlay unit is gone too, and the
# helper's reason is there for the group, with its exit code.
echo 'L4D2_ARGS="-debug"' >> "$STATE/instances/x/instance.env"
out=$(request "start x") && fail "x started with a refused flag"
note "refused start of x answered: $out"
[ -z "$(systemctl list-units --all --no-legend --plain "$(overlay_unit x)")" ] || fail "the failed overlay unit of x stays loaded"
why=$(as_user cat "$STATE/runtime/x/last-failure.json") || fail "left4me cannot read runtime/x/last-failure.json"
if ! grep -q "\"exit_code\":11" <<< "$why" || ! grep -q -- -debug <<< "$why"; then fail "last-failure.json does not say why: $why"; fi
note "x's failed start: $why"
# At most 256 instances enabled for boot: renaming its instance dir between
# enables, the user could otherwise enable names without end (three units
# each at the next boot). 256 links of other names: x is refused, exit 15.
sed -i '/^L4D2_ARGS="-debug"$/d' "$STATE/instances/x/instance.env"
w=/etc/systemd/system/multi-user.target.wants
mkdir -p "$w"
for i in $(seq 1 256); do ln -sf /usr/lib/systemd/system/left4me-server@.service "$w/left4me-server@cap$i.service"; done
since=$(date '+%Y-%m-%d %H:%M:%S')
out=$(request "enable x") && fail "a 257th instance could be enabled"
[ ! -e "$w/left4me-server@x.service" ] || fail "x was enabled past the limit"
UNIT=left4me-enable@x.service unit_journal x "$since" | grep -q 'more than the 256 this host allows' ||
    fail "the refused enable does not say why: $(UNIT=left4me-enable@x.service unit_journal x "$since" | tail -n 5)"
note "the 257th enable answered: $out"
rm -f "$w"/left4me-server@cap*.service
request_ok "enable x"
[ -L "$w/left4me-server@x.service" ] || fail "'enable x' left no link"
request_ok "disable x"
[ ! -e "$w/left4me-server@x.service" ] || fail "'disable x' left the link"
# The enables skip the reload (--no-reload, by design); reload once here so
# later scenarios' systemctl calls print no "changed on disk" warning.
systemctl daemon-reload
note "256 enabled instances: the next is refused, below that it is enabled and disabled"
remove_instance x
