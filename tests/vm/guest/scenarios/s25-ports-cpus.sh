# 25. Ports and CPU placement (issue 22).
#     Ports: srcds gets every port explicitly (game, client = game + 100,
#     SourceTV = game + 200); a second instance whose game port is a running
#     instance's client port is refused by its overlay unit (exit 23, the
#     message names the other instance and the port), nothing mounted. A
#     port held by a foreign process (a userspace forwarder like
#     docker-proxy, relaying to a server of its own on another port): the
#     stand-in moves to the next port as srcds does, and the health check,
#     which asks the configured port, reports the answer as another
#     server's ("answered by a server on port N") and counts it as a
#     failure, not as healthy.
#     CPUs: L4D2_CPUS=1 on the 2-vCPU guest: every thread of the game stays
#     on CPU 1, also the stand-in's threads that ask sched_setaffinity for
#     every CPU and for CPU 0; a CPU the guest lacks is refused (exit 24);
#     without L4D2_CPUS the next start runs on every CPU again.
# budget: 90
. ./health-lib.sh
standard_overlays
install -m 0755 "$SHARE/standin/bin/udp-proxy" /usr/local/bin/udp-proxy

# journal_has UNIT SINCE TEXT: TEXT in UNIT's journal since SINCE, waiting
# up to 10 s for journald to take in what the unit wrote.
journal_has() {
    local deadline=$(( $(now_ms) + 10000 ))
    until journalctl --no-pager -o cat -u "$1" --since "$2" | grep -qF -- "$3"; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# --- Two instances, one port -------------------------------------------------
remove_instance pa
remove_instance pb
make_instance pa 27060 "base" "ports pa"
make_instance pb 27160 "base" "ports pb"
# pb is pinned too: its refused mount comes after the CPUs were set, and
# leaves no runtime drop-in behind (cpus::forget).
echo 'L4D2_CPUS=1' >> "$STATE/instances/pb/instance.env"
start_instance pa
expect_a2s 27060 "ports pa"
journal_has "$(unit pa)" today 'standin: ports: game 27060, client 27160, SourceTV 27260' ||
    fail "srcds of pa did not get the derived client and SourceTV ports: $(unit_journal pa | grep 'ports:')"
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start "$(unit pb)" 2>/dev/null && fail "pb started although its game port 27160 is pa's client port"
[ "$(last_failure_code pb)" = 23 ] ||
    fail "the overlay unit of pb ended with $(last_failure_code pb), expected 23 (port-conflict)"
journal_has "$(overlay_unit pb)" "$since" 'port 27160 (the game port of instance pb) is the client port of instance pa, which is running' ||
    fail "no message naming pa and the port: $(UNIT=$(overlay_unit pb) unit_journal pb "$since" | tail -n 5)"
is_mounted pb && fail "pb is mounted although refused"
dropin() { echo "/run/systemd/system.control/$(unit "$1").d/50-AllowedCPUs.conf"; }
[ ! -e "$(dropin pb)" ] || fail "pb's refused mount left $(dropin pb)"
[ "$(active_state pa)" = active ] || fail "pa is $(active_state pa) after pb's refusal"
remove_instance pb
remove_instance pa

# --- A foreign process on the game port --------------------------------------
# A server of someone else's on 27080, published on 27070 through a
# forwarder; both run as nobody, outside left4me.
rm -rf /tmp/foreign
cp -r "$(gen_dir)" /tmp/foreign
chown -R nobody /tmp/foreign
# setpriv execs (runuser would stay the parent), so $! is the process.
as_nobody() { setpriv --reuid nobody --regid nogroup --clear-groups -- "$@"; }
HOME=/tmp/foreign as_nobody /tmp/foreign/srcds_run -game left4dead2 +hostport 27080 +clientport 27081 -nohltv \
    > "$OUT/s25-foreign.log" 2>&1 &
foreign=$!
as_nobody udp-proxy 27070 27080 2>> "$OUT/s25-foreign.log" &
proxy=$!
cleanup_foreign() { kill "$proxy" "$foreign" 2>/dev/null || true; }
trap cleanup_foreign EXIT
expect_a2s 27070 "installation default"

FAST_STOP=1 health_instance pc 27070 GRACE_SEC=1 INTERVAL_SEC=1 TIMEOUT_SEC=2 FAILURES=3 RESTARTS_MAX=0
systemctl start "$(unit pc)" || fail "pc did not start"
log="$(game_dir pc)/logs/standin.log"
t0=$(now_ms)
until grep -q 'ports: game' "$log" 2>/dev/null; do
    [ $(( $(now_ms) - t0 )) -lt 30000 ] || fail "the stand-in of pc did not bind its ports"
    sleep 0.2
done
grep -q 'Socket bound to non-default port 27071 because original port was already in use' "$log" ||
    fail "the stand-in did not move to the next port: $(grep 'ports:' "$log")"
expect_a2s 27071 "health pc"
until [ -n "$(health_events pc failed-query)" ]; do
    [ $(( $(now_ms) - t0 )) -lt 40000 ] || fail "no failed query from pc's health check: $(health_events pc | tail -n 3)"
    sleep 0.2
done
health_events pc failed-query | head -n 1
health_events pc failed-query | grep -q 'answered by a server on port 27080' ||
    fail "the health check did not say which server answered: $(health_events pc failed-query | head -n 1)"
health_events pc recovered | grep -q . && fail "the health check took the foreign answer as a recovery"
note "foreign process on 27070: pc moved to 27071, its health check reports 'answered by a server on port 27080'"
health_cleanup pc
cleanup_foreign
trap - EXIT

# --- CPU placement -----------------------------------------------------------
[ "$(cat /sys/devices/system/cpu/online)" = 0-1 ] ||
    fail "this scenario needs the 2-vCPU guest; CPUs online: $(cat /sys/devices/system/cpu/online)"
remove_instance pcpu
make_instance pcpu 27090 "base" "cpus pcpu"
echo 'L4D2_CPUS=1' >> "$STATE/instances/pcpu/instance.env"
start_instance pcpu
expect_a2s 27090 "cpus pcpu"
log="$(game_dir pcpu)/logs/standin.log"
t0=$(now_ms)
until [ "$(grep -c 'affinity: thread asked' "$log")" = 2 ]; do
    [ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "the stand-in's threads did not report their affinity"
    sleep 0.2
done
grep 'affinity:' "$log"
grep -q 'asked for every CPU: ok; runs on CPUs 1$' "$log" || fail "the thread that asked for every CPU left CPU 1"
grep -q 'asked for CPU 0: Invalid argument; runs on CPUs 1$' "$log" || fail "the thread that asked for CPU 0 got it"
[ "$(systemctl show -P AllowedCPUs "$(unit pcpu)")" = 1 ] ||
    fail "AllowedCPUs of $(unit pcpu) is '$(systemctl show -P AllowedCPUs "$(unit pcpu)")'"
cg=/sys/fs/cgroup$(systemctl show -P ControlGroup "$(unit pcpu)")
[ "$(cat "$cg/cpuset.cpus.effective")" = 1 ] || fail "the unit's cpuset is $(cat "$cg/cpuset.cpus.effective")"
threads=0
while read -r pid; do
    for status in /proc/"$pid"/task/*/status; do
        allowed=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$status")
        [ "$allowed" = 1 ] || fail "$status: Cpus_allowed_list $allowed"
        threads=$((threads + 1))
    done
done < "$cg/cgroup.procs"
[ "$threads" -ge 3 ] || fail "only $threads threads seen in $cg"
note "L4D2_CPUS=1: all $threads threads of the unit may run on CPU 1 only"
grep -qx 'AllowedCPUs=1' "$(dropin pcpu)" || fail "no runtime drop-in $(dropin pcpu) while pcpu runs"
stop_instance pcpu
# Gone with the mount: one per name ever started would fill /run (tenth review).
# The helper removes it right after the unmount the stop waited for.
t0=$(now_ms)
while [ -e "$(dropin pcpu)" ]; do
    [ $(( $(now_ms) - t0 )) -lt 5000 ] || fail "$(dropin pcpu) outlived the umount by 5 s"
    sleep 0.1
done

# A CPU the guest does not have: refused at mount.
sed -i 's/^L4D2_CPUS=1$/L4D2_CPUS=1,7/' "$STATE/instances/pcpu/instance.env"
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start "$(unit pcpu)" 2>/dev/null && fail "pcpu started with CPU 7 on a 2-CPU guest"
[ "$(last_failure_code pcpu)" = 24 ] ||
    fail "the overlay unit ended with $(last_failure_code pcpu), expected 24 (unknown-cpu)"
journal_has "$(overlay_unit pcpu)" "$since" 'L4D2_CPUS=1,7 names CPU 7 that this host does not have (online: 0-1)' ||
    fail "no message naming the CPU"
systemctl reset-failed "$(unit pcpu)" "$(overlay_unit pcpu)" 2>/dev/null || true  # unloaded already (CollectMode=)

# Without L4D2_CPUS the next start has every CPU again.
sed -i '/^L4D2_CPUS=/d' "$STATE/instances/pcpu/instance.env"
start_instance pcpu
t0=$(now_ms)
until [ "$(grep -c 'affinity: thread asked' "$log")" = 4 ]; do
    [ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "the restarted stand-in's threads did not report"
    sleep 0.2
done
# The log is the upper layer's, so it holds both runs; only this one's
# thread can have run on both CPUs.
grep -q 'asked for every CPU: ok; runs on CPUs 0,1$' "$log" ||
    fail "without L4D2_CPUS the game is still confined: $(grep affinity: "$log" | tail -n 2)"
[ -z "$(systemctl show -P AllowedCPUs "$(unit pcpu)")" ] ||
    fail "AllowedCPUs is still '$(systemctl show -P AllowedCPUs "$(unit pcpu)")'"
remove_instance pcpu
