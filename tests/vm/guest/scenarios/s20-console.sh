# 20. The console: /run/left4me/NAME.stdin is the game's stdin while the
#     server runs; the service user sends a command with one echo and the map
#     seen over A2S changes; nobody outside the group can write or read it;
#     PID 1 holds no descriptor of it; a restart makes a new FIFO; it is gone
#     when the server stops, and a write then neither starts the server nor
#     leaves a file behind.
# budget: 140
remove_instance con
make_instance con 27030 "" "console test"
fifo=/run/left4me/con.stdin
as_user() { runuser -u left4me -- "$@"; }
# expect_map PORT MAP: the A2S answer reports MAP within 20 s.
expect_map() {
    local got deadline=$(( $(now_ms) + 20000 ))
    while :; do
        got=$(a2s-query 127.0.0.1 "$1" --map --timeout 5) || fail "no A2S answer on port $1"
        [ "$got" = "$2" ] && break
        [ "$(now_ms)" -lt "$deadline" ] || fail "A2S map on port $1 is '$got', expected '$2'"
        sleep 0.2
    done
    note "A2S on port $1 reports map '$got'"
}

request_ok "start con"
wait_state con active 30
[ -p "$fifo" ] || fail "$fifo is not a FIFO while the server runs"
[ "$(stat -c '%U:%G %a' "$fifo")" = "root:left4me 660" ] ||
    fail "$fifo is $(stat -c '%U:%G %a' "$fifo"), expected root:left4me 660"
[ "$(stat -c '%U:%G %a' /run/left4me)" = "root:root 711" ] ||
    fail "/run/left4me is $(stat -c '%U:%G %a' /run/left4me), expected root:root 711"
expect_map 27030 c1m1_hotel
# The game opened it itself; PID 1 must hold no descriptor of it, or it
# could be made to read or flush it (docs/unit.md, "The console").
pid1_fds=$(find /proc/1/fd -lname "$fifo*" 2>/dev/null || true)
[ -z "$pid1_fds" ] || fail "PID 1 holds $fifo: $pid1_fds"
game_fd0=$(readlink "/proc/$(systemctl show -P MainPID "$(unit con)")/fd/0")
[ "$game_fd0" = "$fifo" ] || fail "the game's stdin is $game_fd0, not $fifo"
note "PID 1 holds no descriptor of $fifo; the game's stdin: $game_fd0"

# The documented one-liner, as the service user (the web app).
as_user sh -c "echo 'changelevel c2m1_highway' > $fifo" || fail "left4me cannot write the console"
expect_map 27030 c2m1_highway
as_user sh -c "echo 'say hello from the console' > $fifo"
deadline=$(( $(now_ms) + 10000 ))
until grep -q 'console: say hello from the console' <<<"$(unit_journal con)"; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "the game did not log the say command"
    sleep 0.2
done
note "console commands reach the game: changelevel and say"

if runuser -u nobody -- sh -c "echo 'changelevel c3m1_plankcountry' > $fifo" 2>/dev/null; then
    fail "nobody could write the console"
fi
if runuser -u nobody -- timeout 2 sh -c "exec 3<>$fifo" 2>/dev/null; then fail "nobody could open the console"; fi
expect_map 27030 c2m1_highway

# A restart (a request, as the web app asks) gives a new game on a new FIFO (another inode:
# nothing written to the old one can reach the new game); the console works again.
ino=$(stat -c %i "$fifo")
request_ok "restart con"
wait_state con active 30
[ "$(stat -c %i "$fifo")" != "$ino" ] || fail "$fifo is the same FIFO (inode $ino) after the restart"
expect_map 27030 c1m1_hotel
as_user sh -c "echo 'changelevel c5m1_waterfront' > $fifo"
expect_map 27030 c5m1_waterfront

# Stop: the FIFO goes with the overlay unit's stop; the answer is `ok` and
# nothing else.
out=$(request "stop con" 2>&1) || fail "left4me's 'stop con': $out"
[ "$out" = ok ] || fail "'stop con' answered more than ok: $out"
wait_unmounted con 15
deadline=$(( $(now_ms) + 5000 ))
while [ -e "$fifo" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "$fifo still exists after the stop"
    sleep 0.1
done

# Writing to a stopped server's console is no way around the requests: nothing to
# write to, nothing created, nothing started.
if as_user sh -c "echo 'changelevel c1m1_hotel' > $fifo" 2>/dev/null; then fail "left4me could write $fifo while stopped"; fi
[ ! -e "$fifo" ] || fail "a write created $fifo while the server was stopped"
sleep 3
[ "$(active_state con)" = inactive ] || fail "$(unit con) is $(active_state con) after a write to a stopped console"
note "stopped: no console, a write fails and starts nothing"

# A crash loop that gives up takes the console with it.
mkdir -p "$STATE/instances/con/layer/left4dead2"
: > "$STATE/instances/con/layer/left4dead2/crash"
systemctl start "$(unit con)" || true
deadline=$(( $(now_ms) + 90000 ))
until [ "$(active_state con)" = failed ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "crashing $(unit con) did not end failed (is $(active_state con))"
    sleep 0.5
done
sleep 1
[ ! -e "$fifo" ] || fail "$fifo left behind by a server that gave up"
rm -f "$STATE/instances/con/layer/left4dead2/crash"
systemctl reset-failed "$(unit con)" 2>/dev/null || true
remove_instance con
