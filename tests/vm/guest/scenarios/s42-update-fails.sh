# 42. Failed updates leave the current generation in place (docs/updates.md):
#     steamcmd failing, steamcmd writing into a hard-linked file in place
#     (EACCES), a process of the update left behind (commit refuses), the
#     update user's code filling its runtime dir (stopped at the cap of
#     /run/left4me-steamcmd, the host's /run untouched): each
#     time the unit fails with the reason in its journal, `current` and every
#     generation are unchanged, .next/ is gone, the running instance keeps
#     running. With LEFT4ME_UPDATE_COPY=copy the in-place writer succeeds.
# budget: 160
standard_overlays
install_fake_steamcmd
trap restore_host_env EXIT
set_host_env LEFT4ME_UPDATE_RESTART=never
remove_instance fx
make_instance fx 27047 "base" "fails x"
start_instance fx
pid=$(systemctl show -P MainPID "$(unit fx)")
cur=$(gen_current)
build=$(sed -n 's/^[[:space:]]*"buildid"[[:space:]]*"\([0-9]*\)".*/\1/p' "$GENS/$cur/steamapps/appmanifest_222860.acf")
declare -A sums
for g in $(gen_ids); do sums[$g]=$(tree_sum "$GENS/$g"); done
gens=$(gen_ids | tr '\n' ' ')

# expect_failed_update MODE "JOURNAL TEXT": the run fails, says why, changes nothing.
expect_failed_update() {
    fake_steamcmd_conf $((build + 1)) "$1"
    if run_update 2>/dev/null; then fail "$1: left4me-update.service succeeded"; fi
    [ "$(systemctl show -P ActiveState left4me-update.service)" = failed ] ||
        fail "$1: left4me-update.service is $(systemctl show -P ActiveState left4me-update.service), not failed"
    local journal g
    journal=$(update_journal)
    grep -qF "$2" <<<"$journal" || fail "$1: the journal does not say '$2': $journal"
    [ "$(gen_current)" = "$cur" ] || fail "$1: current moved to $(gen_current)"
    [ ! -e "$GENS/.next" ] || fail "$1: .next/ left behind: $(ls -la "$GENS/.next")"
    [ "$(gen_ids | tr '\n' ' ')" = "$gens" ] || fail "$1: generations were $gens, now $(gen_ids | tr '\n' ' ')"
    for g in "${!sums[@]}"; do
        [ "$(tree_sum "$GENS/$g")" = "${sums[$g]}" ] || fail "$1: generation $g changed"
    done
    [ "$(systemctl show -P MainPID "$(unit fx)")" = "$pid" ] || fail "$1: fx was restarted"
    expect_a2s 27047 "fails x"
    note "$1: unit failed ($(grep -F "$2" <<<"$journal" | head -n1)); current $cur and its tree unchanged, .next/ gone"
}
expect_failed_update fail "Error! App '222860' state is 0x202 after update job."
# steamcmd's sandbox (sixteenth and seventeenth reviews): /tmp, /var/tmp
# and /dev/shm capped tmpfs of its own, not the host's; l4d2-update.slice,
# which caps all runs' memory together; its own IPC namespace; no core
# files.
sandbox=$(update_journal | sed -n 's/^fake-steamcmd: sandbox: //p' | tail -n 1)
[[ $sandbox == "/tmp tmpfs 512M, /var/tmp tmpfs 512M, /dev/shm tmpfs 64M, cgroup /l4d2.slice/l4d2-update.slice/left4me-update.service, ipc "*", core 0/0" ]] ||
    fail "steamcmd's sandbox: '$sandbox'"
[ "$(cat /sys/fs/cgroup/l4d2.slice/l4d2-update.slice/memory.max) $(cat /sys/fs/cgroup/l4d2.slice/l4d2-update.slice/memory.swap.max)" = "2147483648 0" ] ||
    fail "l4d2-update.slice: memory.max $(cat /sys/fs/cgroup/l4d2.slice/l4d2-update.slice/memory.max), swap.max $(cat /sys/fs/cgroup/l4d2.slice/l4d2-update.slice/memory.swap.max)"
[ "${sandbox#*ipc }" != "$(readlink /proc/1/ns/ipc), core 0/0" ] || fail "steamcmd shares PID 1's IPC namespace: $sandbox"
note "steamcmd's sandbox: $sandbox"
expect_failed_update inplace "cannot write /run/left4me-update-next/left4dead2/steam.inf in place"
grep -q "Permission denied" <<<"$(update_journal)" || fail "inplace: no EACCES from the write into the hard link"
expect_failed_update linger "still run"
pgrep -u left4me-update >/dev/null && fail "a process of left4me-update survived the failed run: $(pgrep -a -u left4me-update)"

# The update user's code (steamcmd runs it) filling its runtime dir: stopped
# at the cap of /run/left4me-steamcmd (24 MiB, run-left4me\x2dsteamcmd.mount),
# the host's /run untouched, and the fill gone with the run.
run_free=$(df -B1 --output=avail /run | tail -n 1)
expect_failed_update fill "fake-steamcmd: filled /run/left4me-steamcmd/update with "
read -r filled during < <(update_journal | sed -n 's|^fake-steamcmd: filled /run/left4me-steamcmd/update with \([0-9]*\) bytes until ENOSPC; free bytes: /run \([0-9]*\), .*|\1 \2|p')
[ -n "$filled" ] || fail "fill: no figures in the journal: $(update_journal | grep -F filled)"
cap=$((24 * 1024 * 1024))
[ "$filled" -le "$cap" ] && [ "$filled" -gt $((cap - 1024 * 1024)) ] ||
    fail "fill: the update user wrote $filled bytes into its runtime dir, expected just below the cap of $cap"
[ $((run_free - during)) -lt $((1024 * 1024)) ] ||
    fail "fill: /run lost $((run_free - during)) bytes to the update user's fill"
[ ! -e /run/left4me-steamcmd/update ] || fail "fill: the runtime dir outlived the run: $(ls -la /run/left4me-steamcmd/update)"
[ "$(df -B1 --output=used /run/left4me-steamcmd | tail -n 1)" -lt $((1024 * 1024)) ] ||
    fail "fill: /run/left4me-steamcmd still holds $(df -B1 --output=used /run/left4me-steamcmd | tail -n 1) bytes after the run"
echo "steamcmd-run-fill $filled cap $cap run-free-before $run_free run-free-during $during" >> "$OUT/run-fill-figures"
note "fill: the update user's code stopped at $filled bytes (cap $cap); /run had $run_free bytes free before, $during during; nothing left after the run"

# A steamcmd that patches in place works with full copies, at their price.
set_host_env LEFT4ME_UPDATE_RESTART=never LEFT4ME_UPDATE_COPY=copy
fake_steamcmd_conf $((build + 1)) inplace
run_update || fail "copy mode: left4me-update.service failed: $(update_journal | tail -n 20)"
new=$(gen_current)
[ "$new" != "$cur" ] || fail "copy mode: no new generation"
grep -qx "buildid=$((build + 1))" "$GENS/$new/left4dead2/steam.inf" || fail "copy mode: the in-place patch is not in $new"
[ "$(tree_sum "$GENS/$cur")" = "${sums[$cur]}" ] || fail "copy mode: the in-place patch reached $cur"
g=left4dead2/gameinfo.txt
[ "$(stat -c %i "$GENS/$cur/$g")" != "$(stat -c %i "$GENS/$new/$g")" ] || fail "copy mode: $g is shared with $cur"
note "copy mode: the in-place writer succeeded, $cur untouched, $new a full copy"
stop_instance fx; remove_instance fx
