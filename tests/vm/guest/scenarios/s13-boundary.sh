# 13. The root boundary (issue 8): nothing the service user writes reaches a
#     root process, as code, environment, identity or a path PID 1 opens.
# budget: 970
standard_overlays
as_user() { runuser -u left4me -- "$@"; }
probe_dir=/var/tmp/left4me-probe
rm -rf "$probe_dir"; mkdir -p "$probe_dir"; chmod 0755 "$probe_dir"
: > "$probe_dir/log"; chmod 0666 "$probe_dir/log"
# The probe lies where the attacker would put it: in a file the user owns.
install -o left4me -g left4me -m 0755 "$SHARE/standin/bin/ld-probe.so" "$probe_dir/probe.so"
probe="$probe_dir/probe.so"
# Control: the probe works, so an empty log below means it was never loaded.
as_user env LD_PRELOAD="$probe" /bin/true
grep -q "euid=$(id -u left4me) .*exe=/usr/bin/true" "$probe_dir/log" || fail "the LD_PRELOAD probe does not record"
: > "$probe_dir/log"

# a. Every environment file of every unit this package ships is root-owned
#    and every directory above it is writable by root only: PID 1 reads them
#    as root. A user-written instance.env here is the seed unit's flaw.
remove_instance bnd
make_instance bnd 27050 "base" "boundary"
for u in "$(unit bnd)" "$(overlay_unit bnd)" "$(reset_unit bnd)" left4me-enable@bnd.service left4me-disable@bnd.service \
         left4me-update.service; do
    files=$(systemctl show -P EnvironmentFiles "$u" | sed 's/ (ignore_errors=[a-z]*)//g')
    for f in $files; do
        p=$f
        while [ "$p" != / ]; do
            if [ -e "$p" ]; then
                read -r owner mode < <(stat -L -c '%u %a' "$p")
                [ "$owner" = 0 ] || fail "$u reads $f; $p is owned by uid $owner, not root"
                (( (8#$mode & 8#022) == 0 )) || fail "$u reads $f; $p has mode $mode (group/other may write)"
            fi
            p=$(dirname "$p")
        done
    done
    note "$u: environment files: ${files:-none}, all root-only"
done
# The root units carry no environment file at all, and no `+`/`!` lines
# exist anywhere (the server's commands all run as the service user) but in
# the update and verify units, whose `+` lines are the helper's generation
# verbs, with the unit's own environment (unit file and host.env, root's,
# checked above).
for u in "$(overlay_unit bnd)" "$(reset_unit bnd)"; do
    [ -z "$(systemctl show -P EnvironmentFiles "$u")" ] || fail "$u reads an environment file"
done
if grep -nE '^Exec[A-Za-z]*=[-@:]*[+!]' /usr/lib/systemd/system/left4me-*.service |
    grep -v '^/usr/lib/systemd/system/left4me-\(update\|verify\).service:'; then
    fail "a unit runs a command with full privileges (lines above)"
fi
for kind in update verify; do
    v=; [ "$kind" = verify ] && v=" --verify"
    # The update names the verification: while systemd runs it, .next/ is
    # its tree. Not the other way round (left4me-verify.service.in says why).
    sibling=" --sibling left4me-verify.service"; [ "$kind" = verify ] && sibling=
    plus=$(grep -E '^Exec[A-Za-z]*=[-@:]*[+!]' "/usr/lib/systemd/system/left4me-$kind.service")
    [ "$(wc -l <<<"$plus")" = 3 ] || fail "left4me-$kind.service has $(wc -l <<<"$plus") privileged lines, expected 3"
    while IFS= read -r line; do
        case $line in
            "ExecStartPre=+$HELPER --state-dir $STATE generation prepare$v --owner left4me-update$sibling" | \
            "ExecStartPost=+$HELPER --state-dir $STATE generation commit$v --steamcmd-log /run/left4me-steamcmd/$kind/steamcmd.log" | \
            "ExecStopPost=+/bin/sh -c '[ \"\$\$SERVICE_RESULT\" = success ] || exec \"\$\$0\" --state-dir $STATE generation abort$sibling' $HELPER") ;;
            *) fail "left4me-$kind.service has an unexpected privileged line: $line" ;;
        esac
    done <<<"$plus"
done
[ "$(systemctl show -P User left4me-update.service)" = left4me-update ] || fail "steamcmd does not run as left4me-update"
[ "$(systemctl show -P User "$(unit bnd)")" = left4me ] || fail "the game does not run as left4me"

# b. LD_PRELOAD, LEFT4ME_* or any other key outside L4D2_* in instance.env:
#    the helper refuses the instance (exit 11, names the key); the probe was
#    loaded by no process at all, identity and upper/ are untouched.
start_instance bnd
expect_a2s 27050 "boundary"
stop_instance bnd
upper_owner=$(stat -c %U "$STATE/runtime/bnd/upper")
for bad in "LD_PRELOAD=$probe" "LEFT4ME_USER=www-data" "LEFT4ME_GROUP=root" "LD_LIBRARY_PATH=$probe_dir"; do
    make_instance bnd 27050 "base" "boundary"
    chown -R left4me: "$STATE/instances/bnd"
    as_user sh -c "echo '$bad' >> $STATE/instances/bnd/instance.env" || fail "cannot append to instance.env as left4me"
    since=$(date '+%Y-%m-%d %H:%M:%S')
    rm -f "$STATE/runtime/bnd/last-failure.json"
    if out=$(request "start bnd"); then fail "the instance started with $bad"; fi
    [ "$(last_failure_code bnd)" = 11 ] ||
        fail "$bad: helper exited $(last_failure_code bnd), expected 11"
    key=${bad%%=*}
    # The helper logged it before it exited, but journald may not have
    # written it yet on a loaded host.
    journalctl --sync
    UNIT=$(overlay_unit bnd) unit_journal bnd "$since" | grep -F "$key" ||
        fail "$bad: the overlay unit's journal does not name $key"
    is_mounted bnd && fail "$bad: mounted anyway"
    [ ! -e "$STATE/runtime/.left4me/bnd.env" ] || fail "$bad: a game environment was written"
    [ "$(stat -c %U "$STATE/runtime/bnd/upper")" = "$upper_owner" ] || fail "$bad: upper/ changed owner"
    systemctl reset-failed "$(unit bnd)" "$(overlay_unit bnd)" 2>/dev/null || true  # unloaded already (CollectMode=)
done
[ ! -s "$probe_dir/log" ] || fail "the probe was loaded: $(cat "$probe_dir/log")"
note "LD_PRELOAD/LD_LIBRARY_PATH/LEFT4ME_* in instance.env refused (exit 11); probe loaded by no process"

# c. instance.env swapped for a symlink to a root-only file right after the
#    mount: the game's environment is the helper's copy, nothing of the
#    root-only file reaches it. A test-only drop-in does the user's swap at
#    the worst moment, deterministically: after the overlay unit mounted,
#    before the game unit starts.
make_instance bnd 27050 "base" "boundary"
chown -R left4me: "$STATE/instances/bnd"
secret=/root/left4me-secret.env
echo "L4D2_LEAK_CANARY=root-only-$RANDOM$RANDOM" > "$secret"; chmod 0600 "$secret"
dropin=/run/systemd/system/$(overlay_unit bnd).d
mkdir -p "$dropin"
cat > "$dropin/swap.conf" <<UNIT
[Service]
ExecStartPost=runuser -u left4me -- sh -c 'ln -s $secret $STATE/instances/bnd/swap && mv -T $STATE/instances/bnd/swap $STATE/instances/bnd/instance.env'
UNIT
systemctl daemon-reload
request_ok "start bnd"
rm -rf "$dropin"; systemctl daemon-reload
[ -L "$STATE/instances/bnd/instance.env" ] || fail "the swap did not happen"
wait_state bnd active 30
expect_a2s 27050 "boundary"
pid=$(pgrep -u left4me -f 'srcds_linux.*27050' | head -n1)
[ -n "$pid" ] || fail "no srcds_linux process for bnd"
env_of_game=$(tr '\0' '\n' < "/proc/$pid/environ")
echo "$env_of_game" | grep -q '^L4D2_PORT=27050$' || fail "the game's environment lacks L4D2_PORT=27050"
if echo "$env_of_game" | grep -F "$(cut -d= -f2 "$secret")"; then fail "the root-only file leaked into the game"; fi
if echo "$env_of_game" | grep -E '^(LD_|LEFT4ME_USER|LEFT4ME_GROUP)'; then fail "LD_*/LEFT4ME_USER/GROUP in the game's environment"; fi
note "game environment after the swap: $(echo "$env_of_game" | grep '^L4D2_' | tr '\n' ' ')"
# A restart remounts: the helper now refuses the symlinked instance.env.
since=$(date '+%Y-%m-%d %H:%M:%S')
if out=$(request "restart bnd"); then fail "restart accepted a symlinked instance.env"; fi
note "restart with a symlinked instance.env answered: $out"
UNIT=$(overlay_unit bnd) unit_journal bnd "$since" | grep -i 'symlink' || fail "no symlink refusal in the journal"
is_mounted bnd && fail "mounted with a symlinked instance.env"
rm -f "$secret" "$STATE/instances/bnd/instance.env"
remove_instance bnd

# d. Reset as the web app does it, 10 times, no sleeps: stop, reset, start,
#    each a request to root's request server as left4me; each reset really
#    discards the write.
make_instance bnd 27050 "base" "boundary"
request_ok "start bnd"
wait_state bnd active 30
t0=$(now_ms)
# 10: CI's time budget (issue 21: long repetitions with fewer cycles in
# CI). 100 in a row passed on trixie before (docs/vm.md), and the bench's 10
# one-request and 10 three-request cycles run the same path again; a race
# shows in the first cycles as readily.
cycles=10
for i in $(seq "$cycles"); do
    as_user sh -c "echo $i > $(merged bnd)/left4dead2/scratch.txt" || fail "cycle $i: cannot write"
    out=$(request "stop bnd" "reset bnd" "start bnd") ||
        fail "cycle $i: stop, reset, start answered $(tr '\n' ' ' <<<"$out"); the reset unit's last lines: $(journalctl -u "$(reset_unit bnd)" -n 5 --no-pager -o cat)"
    is_mounted bnd || fail "cycle $i: not mounted after start"
    [ ! -e "$(merged bnd)/left4dead2/scratch.txt" ] || fail "cycle $i: the reset did not discard scratch.txt"
done
note "stop/reset/start as left4me: $i of $i cycles, $(( ($(now_ms) - t0) / i )) ms per cycle"
expect_a2s 27050 "boundary"
stop_instance bnd
remove_instance bnd
rm -rf "$probe_dir"
