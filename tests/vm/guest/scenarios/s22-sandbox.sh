# 22. What the game unit's sandbox enforces, and what it does not
#     (docs/unit.md): run inside the real unit of an instance, through a
#     drop-in's ExecStartPre= lines,
#     - RestrictAddressFamilies= refuses AF_ALG to a 64-bit process, but not
#       to an i386 one, through socket() or socketcall(): systemd does not
#       filter the x86 ABI at all;
#     - ptrace is not in @system-service: breakpad's TRACEME fails with EPERM
#       for both ABIs, and the documented operator drop-in allows it;
#     - glibc 2.41 refuses a library that asks for an executable stack, and
#       GLIBC_TUNABLES=glibc.rtld.execstack=2 in host.env lets it load;
#     - the helper refuses -autoupdate in L4D2_ARGS (exit 11, names the flag);
#     - /dev/shm, /tmp and /var/tmp are the game's own capped tmpfs, empty
#       at each start, its IPC namespace is its own, it can neither dump
#       core nor swap, and the request socket is hidden from the game.
# budget: 180
set -o pipefail
remove_instance sbx

# The set with every nested group expanded (the listing names groups such as
# @process without their members).
declare -A seen=()
expand_set() {
    local line
    [ -n "${seen[$1]:-}" ] && return 0
    seen[$1]=1
    while read -r line; do
        case $line in
            '#'*|'') ;;
            @*) expand_set "$line" ;;
            *) echo "$line" ;;
        esac
    done < <(systemd-analyze syscall-filter "$1" | tail -n +2)
}
calls=$(expand_set @system-service | sort -u)
[ "$(wc -l <<<"$calls")" -gt 100 ] || fail "expanding @system-service gave only: $calls"
grep -qx ptrace <<<"$calls" && fail "this systemd's @system-service contains ptrace"
note "ptrace is not in @system-service (systemd $(systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'))"

modprobe af_alg 2>/dev/null || true
root_af=$("$SHARE/standin/bin/sandbox-probe" af)
grep -q 'native socket(AF_ALG): ok' <<<"$root_af" || fail "AF_ALG unusable even outside the sandbox: $root_af"

rm -rf "$STATE/overlays/probe"
mkdir -p "$STATE/overlays/probe/probe"
cp "$SHARE/standin/bin/sandbox-probe" "$SHARE/standin/bin/sandbox-probe32" \
    "$SHARE/standin/bin/execstack32.so" "$STATE/overlays/probe/probe/"
make_instance sbx 27032 "probe" "sandbox probe"
p=$STATE/runtime/%i/merged/probe
real=$STATE/runtime/sbx/merged/probe
dropin=/run/systemd/system/left4me-server@sbx.service.d
mkdir -p "$dropin"
cat > "$dropin/probe.conf" <<UNIT
[Service]
ExecStartPre=$p/sandbox-probe af
ExecStartPre=$p/sandbox-probe32 af
ExecStartPre=$p/sandbox-probe ptrace
ExecStartPre=$p/sandbox-probe32 ptrace
ExecStartPre=$p/sandbox-probe32 dlopen $p/execstack32.so
ExecStartPre=/bin/sh -c 'echo native shm: \$\$(findmnt -no FSTYPE,SIZE /dev/shm) \$\$(ls /dev/shm | wc -l); : > /dev/shm/left4me-shm-probe'
ExecStartPre=/bin/sh -c 'if test -S /run/left4me-requests/requests.sock; then echo "native requests: visible"; else echo "native requests: hidden"; fi'
ExecStartPre=/bin/sh -c 'echo native tmp: \$\$(findmnt -no FSTYPE,SIZE /tmp) \$\$(ls -A /tmp | wc -l) \$\$(findmnt -no FSTYPE,SIZE /var/tmp) \$\$(ls -A /var/tmp | wc -l); : > /tmp/left4me-tmp-probe; : > /var/tmp/left4me-tmp-probe'
ExecStartPre=/bin/sh -c 'echo native ipc: \$\$(readlink /proc/self/ns/ipc); echo native core: \$\$(ulimit -c) \$\$(ulimit -Hc); ulimit -c unlimited 2>/dev/null && echo native core raised || echo native core: cannot raise'
UNIT
systemctl daemon-reload

# run_probes: starts sbx, prints what the probes said, stops it again.
run_probes() {
    local since
    since=$(date '+%Y-%m-%d %H:%M:%S')
    sleep 1
    start_instance sbx
    expect_a2s 27032 "sandbox probe" >/dev/null
    unit_journal sbx "$since" | grep -E '^(native|i386) '
    # Seen from the host while the game runs: its /tmp and /var/tmp files
    # (PrivateTmp= put them below the host's), its IPC namespace, its swap.
    local cg
    cg=/sys/fs/cgroup$(systemctl show -P ControlGroup "$(unit sbx)")
    echo "host tmp probes: $(find /tmp /var/tmp -name left4me-tmp-probe 2>/dev/null | wc -l)"
    echo "host ipc: $(readlink /proc/1/ns/ipc)"
    echo "host swap.max: $(cat "$cg/memory.swap.max")"
    # No memory.high below max on the game's cgroup or any ancestor: above
    # it the kernel sleeps inside the game's page faults, locks held
    # (docs/unit.md, "Resources").
    local d=$cg high=''
    while [ "$d" != /sys/fs/cgroup ]; do
        high+="${d#/sys/fs/cgroup} $(cat "$d/memory.high" 2>/dev/null || echo none);"
        d=${d%/*}
    done
    echo "host memory.high: $high"
    stop_instance sbx
}
expect_line() { grep -qF "$2" <<<"$1" || fail "expected '$2' from the probes, got:
$1"; }

out=$(run_probes)
echo "$out"
expect_line "$out" "native socket(AF_ALG): Address family not supported by protocol"
expect_line "$out" "i386 socket(AF_ALG): ok"
expect_line "$out" "i386 socketcall(SOCKET, AF_ALG): ok"
expect_line "$out" "native ptrace(TRACEME): Operation not permitted"
# The game's /dev/shm is its own, capped and empty at every start; what it
# writes there never reaches the host's.
expect_line "$out" "native shm: tmpfs 256M 0"
[ ! -e /dev/shm/left4me-shm-probe ] || fail "the game's /dev/shm file reached the host's /dev/shm"
# /tmp and /var/tmp too (sixteenth review: PrivateTmp= put them in the
# host's /tmp tmpfs and on the root filesystem, uncapped).
expect_line "$out" "native tmp: tmpfs 256M 0 tmpfs 256M 0"
expect_line "$out" "host tmp probes: 0"
# Its own System V IPC namespace (the host's ids are host-wide limits that
# bind root too), no core files (root's core handler would store them) and
# no swap.
game_ipc=$(sed -n 's/^native ipc: //p' <<<"$out")
host_ipc=$(sed -n 's/^host ipc: //p' <<<"$out")
[ -n "$game_ipc" ] && [ -n "$host_ipc" ] && [ "$game_ipc" != "$host_ipc" ] ||
    fail "the game's IPC namespace '$game_ipc' is not its own (PID 1's: '$host_ipc')"
expect_line "$out" "native core: 0 0"
expect_line "$out" "native core: cannot raise"
expect_line "$out" "host swap.max: 0"
high=$(grep '^host memory.high: ' <<<"$out")
[ -n "$high" ] && ! grep -qE ' (none|[0-9]+);' <<<"$high" || fail "a memory.high below max above the game: $high"
note "the game's /tmp, /var/tmp and /dev/shm are its own capped tmpfs; IPC namespace $game_ipc (PID 1's $host_ipc); core limit 0/0; swap.max 0"
# The request socket is the web app's and the health check's, not the game's.
[ -S /run/left4me-requests/requests.sock ] || fail "no request socket on the host"
expect_line "$out" "native requests: hidden"
expect_line "$out" "i386 ptrace(TRACEME): Operation not permitted"
glibc=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)
if [ "$(printf '%s\n' "$glibc" 2.41 | sort -V | head -n1)" = 2.41 ]; then
    expect_line "$out" "i386 dlopen: $real/execstack32.so: cannot enable executable stack"
    note "glibc $glibc refuses the execstack library by default"
else
    expect_line "$out" "i386 dlopen: ok"
    note "glibc $glibc loads the execstack library by default"
fi

# The operator's ways out, both documented: ptrace for crash dumps (drop-in),
# the execstack tunable (host.env).
printf '[Service]\nSystemCallFilter=ptrace\n' > "$dropin/crash-dumps.conf"
cp /etc/left4me/host.env /var/tmp/host.env.orig
sed -i 's/^#GLIBC_TUNABLES=glibc.rtld.execstack=2$/GLIBC_TUNABLES=glibc.rtld.execstack=2/' /etc/left4me/host.env
grep -qx 'GLIBC_TUNABLES=glibc.rtld.execstack=2' /etc/left4me/host.env || fail "host.env has no commented GLIBC_TUNABLES line to enable"
systemctl daemon-reload
out=$(run_probes)
echo "$out"
cp /var/tmp/host.env.orig /etc/left4me/host.env
rm -f "$dropin/crash-dumps.conf"
expect_line "$out" "native ptrace(TRACEME): ok"
expect_line "$out" "i386 ptrace(TRACEME): ok"
expect_line "$out" "i386 dlopen: ok"
rm -rf "$dropin"
systemctl daemon-reload

# srcds_run flags that cannot work here are refused before anything mounts.
sed -i 's/^L4D2_ARGS=.*/L4D2_ARGS="+map c1m1_hotel -autoupdate"/' "$STATE/instances/sbx/instance.env"
if systemctl start "$(unit sbx)" 2>/dev/null; then fail "sbx started with -autoupdate"; fi
[ "$(last_failure_code sbx)" = 11 ] ||
    fail "overlay unit exit status $(last_failure_code sbx), expected 11"
journal=$(UNIT=$(overlay_unit sbx) unit_journal sbx)
grep -q 'L4D2_ARGS: -autoupdate cannot work in left4me' <<<"$journal" ||
    fail "the journal does not say why -autoupdate was refused"
is_mounted sbx && fail "sbx mounted despite the refused L4D2_ARGS"
systemctl reset-failed "$(unit sbx)" "$(overlay_unit sbx)" 2>/dev/null || true
remove_instance sbx
rm -rf "$STATE/overlays/probe"
