# Benchmark figures (printed, not asserted beyond "the cycle worked"), each
# new-design figure beside a baseline measured in the same boot:
# - stop-to-unmounted, 20 cycles each, alternating: the shipped units driven
#   as the web app does (left4me through polkit), the same as root, and the
#   pre-split unit (tests/vm/guest/baseline-seed-design@.service, as root);
# - the reset cycle (stop, reset, start, first A2S answer), 10 cycles: as the
#   web app in one request (marker + restart) and in three (polkit,
#   left4me-reset@) vs the pre-split unit with the helper's reset run
#   directly, with where the one-request cycle's time goes;
# - `left4me list` over 32 running instances (must stay under 0.5 s);
# - 32 instances started together until all answer A2S, then stopped together
#   until all are unmounted (as root, see below).
# budget: 3600
install_standin
make_overlay base "left4dead2/cfg/server.cfg=hostname \"bench base\""
remove_instance bench
make_instance bench 27040 "base" "bench"
# The instance dir as the web app makes it: the service user's, so it can
# ask for the one-request reset (instances/bench/reset-at-start).
chown left4me:left4me "$STATE/instances/bench"
m=$(merged bench)
as_user() { runuser -u left4me -- "$@"; }
baseline=baseline-seed-design@bench.service
cp "$SHARE/guest/baseline-seed-design@.service" /run/systemd/system/
systemctl daemon-reload

# Median and p95 (nearest rank) of integers in ms, one per line on stdin.
stats() {
    local -a v
    mapfile -t v < <(sort -n)
    local n=${#v[@]}
    local p95=$(( (95 * n + 99) / 100 - 1 ))
    echo "median $(( v[(n - 1) / 2] )) ms, p95 ${v[p95]} ms, min ${v[0]} ms, max ${v[n - 1]} ms (n=$n)"
}
median() { local -a v; mapfile -t v < <(sort -n); echo "${v[(${#v[@]} - 1) / 2]}"; }
# ratio A B: A/B with two decimals
ratio() { echo "$1 $2" | awk '{ printf "%.2f", $1 / $2 }'; }
# paired_ratio "A..." "B...": the median of A[i]/B[i]. The designs alternate
# cycle by cycle, so each pair ran under the same host load; under emulation
# on a busy host the load drifts more between cycles than the designs
# differ, and the pairs cancel that drift where the medians of each do not.
paired_ratio() {
    local -a a=($1) b=($2) r
    local i
    for i in "${!a[@]}"; do r+=("$(echo "${a[i]} ${b[i]}" | awk '{ printf "%.4f", $1 / $2 }')"); done
    printf '%s\n' "${r[@]}" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'
}

# stop_to_unmounted "CMD..." UNIT: starts UNIT, waits for A2S, then times
# CMD (a --no-block stop) until merged/ is gone from PID 1's mount table.
stop_to_unmounted() {
    local u=$1; shift
    systemctl start "$u" || fail "start $u failed"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "$u: no A2S answer"
    local t0=${EPOCHREALTIME/./}
    "$@"
    # Tight pure-bash poll of PID 1's mount table: no fork per iteration.
    while mounted_at "$m"; do
        [ $(( ${EPOCHREALTIME/./} - t0 )) -lt 30000000 ] || fail "$u: still mounted after 30 s"
    done
    echo $(( (${EPOCHREALTIME/./} - t0) / 1000 ))
    while [ "$(systemctl show -P ActiveState "$u")" != inactive ]; do sleep 0.1; done
}

# The baseline has no health check, which the split units start with every
# server (issue 14): "root, no health" masks it for its cycles, so the
# boundary split's own cost shows apart from the health check's.
no_health() {
    systemctl mask --runtime --quiet left4me-health@bench.service
    stop_to_unmounted "$@"
    systemctl unmask --runtime --quiet left4me-health@bench.service
}
web=() root=() bare=() seed=()
for i in $(seq 20); do
    web+=("$(stop_to_unmounted "$(unit bench)" as_user systemctl stop --no-block "$(unit bench)")")
    root+=("$(stop_to_unmounted "$(unit bench)" systemctl stop --no-block "$(unit bench)")")
    bare+=("$(no_health "$(unit bench)" systemctl stop --no-block "$(unit bench)")")
    seed+=("$(stop_to_unmounted "$baseline" systemctl stop --no-block "$baseline")")
done

# A failure inside $(...) ends only that subshell; make it end the bench.
for v in "${web[@]}" "${root[@]}" "${bare[@]}" "${seed[@]}"; do
    [[ $v =~ ^[0-9]+$ ]] || fail "a stop-to-unmounted cycle failed (got '$v')"
done
[ ${#web[@]} -eq 20 ] && [ ${#root[@]} -eq 20 ] && [ ${#bare[@]} -eq 20 ] && [ ${#seed[@]} -eq 20 ] || fail "stop-to-unmounted: cycles missing"

# ts_us UNIT PROPERTY: a timestamp property of UNIT in epoch microseconds.
ts_us() {
    local v
    v=$(systemctl show --timestamp=us+utc -P "$2" "$1")
    [ -n "$v" ] || { echo 0; return; }
    date -d "$v" +%s%6N
}
ms_between() { echo $(( ($2 - $1) / 1000 )); }

# polkit's share: a start of a unit that is already active is a no-op job,
# so the same request as the service user and as root differ by the
# authorisation only.
as_user systemctl start "$(unit bench)" || fail "start for the polkit figure failed"
pk_user=() pk_root=()
for i in $(seq 10); do
    t0=${EPOCHREALTIME/./}; as_user systemctl start "$(unit bench)"; pk_user+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    t0=${EPOCHREALTIME/./}; systemctl start "$(unit bench)"; pk_root+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
done
systemctl stop "$(unit bench)"; wait_unmounted bench 30

# The reset cycle (stop, reset, start, first A2S answer) three ways, each
# cycle of one way beside one of the others under the same load:
# - web app, one request (the shipped design): the service user creates
#   instances/bench/reset-at-start and asks for one restart; the overlay
#   unit's umount and mount run in that transaction and the mount starts
#   from an empty writable layer;
# - web app, three requests: stop, `systemctl start --wait left4me-reset@`,
#   start, each through polkit;
# - the pre-split unit with the helper's reset run directly (the seed).
# For the one-request cycle, where the time goes, from systemd's own
# timestamps: request to umount done (polkit, the game's SIGINT exit, the
# umount), the mount (with the reset), from the mount to the game's exec
# (the job), and from the exec to the first A2S answer (the game's start).
web_one=() web_reset=() seed_reset=() ph_stop=() ph_mount=() ph_job=() ph_game=()
for i in $(seq 10); do
    as_user systemctl start "$(unit bench)" || fail "reset cycle $i: start failed"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "reset cycle $i: not answering before"
    as_user sh -c "echo played > $m/left4dead2/bench-written.txt"
    t0=${EPOCHREALTIME/./}
    as_user sh -c ": > $STATE/instances/bench/reset-at-start"
    as_user systemctl restart "$(unit bench)" || fail "reset cycle $i: the restart was refused"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "reset cycle $i: no A2S answer after the one-request reset"
    t1=${EPOCHREALTIME/./}
    web_one+=($(( (t1 - t0) / 1000 )))
    [ ! -e "$m/left4dead2/bench-written.txt" ] || fail "reset cycle $i: the one-request reset kept the game's file"
    [ ! -e "$STATE/instances/bench/reset-at-start" ] || fail "reset cycle $i: the marker was not consumed"
    umounted=$(ts_us "$(overlay_unit bench)" InactiveEnterTimestamp)
    mount0=$(ts_us "$(overlay_unit bench)" ExecMainStartTimestamp)
    mount1=$(ts_us "$(overlay_unit bench)" ExecMainExitTimestamp)
    game0=$(ts_us "$(unit bench)" ExecMainStartTimestamp)
    ph_stop+=("$(ms_between "$t0" "$umounted")"); ph_mount+=("$(ms_between "$mount0" "$mount1")")
    ph_job+=("$(ms_between "$mount1" "$game0")"); ph_game+=("$(ms_between "$game0" "$t1")")

    t0=${EPOCHREALTIME/./}
    as_user systemctl stop "$(unit bench)"
    as_user systemctl start --wait "$(reset_unit bench)" || fail "reset cycle $i: left4me-reset@bench failed"
    as_user systemctl start "$(unit bench)"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "reset cycle $i: no A2S answer after reset"
    web_reset+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    systemctl stop "$(unit bench)"; wait_unmounted bench 30

    systemctl start "$baseline"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "baseline reset cycle $i: not answering before"
    t0=${EPOCHREALTIME/./}
    systemctl stop "$baseline"
    "$HELPER" reset bench >/dev/null || fail "baseline reset cycle $i: reset failed"
    systemctl start "$baseline"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "baseline reset cycle $i: no A2S answer after reset"
    seed_reset+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    systemctl stop "$baseline"
done
remove_instance bench
rm -f /run/systemd/system/baseline-seed-design@.service
systemctl daemon-reload

mw=$(printf '%s\n' "${web[@]}" | median); mr=$(printf '%s\n' "${root[@]}" | median)
ms=$(printf '%s\n' "${seed[@]}" | median)
rw=$(printf '%s\n' "${web_reset[@]}" | median); rs=$(printf '%s\n' "${seed_reset[@]}" | median)
r1=$(printf '%s\n' "${web_one[@]}" | median)
{
    echo "stop-to-unmounted, web app (left4me, polkit): $(printf '%s\n' "${web[@]}" | stats)"
    echo "stop-to-unmounted, root:                      $(printf '%s\n' "${root[@]}" | stats)"
    echo "stop-to-unmounted, root, health check masked: $(printf '%s\n' "${bare[@]}" | stats)"
    echo "stop-to-unmounted, pre-split unit (baseline): $(printf '%s\n' "${seed[@]}" | stats)"
    echo "stop-to-unmounted ratio (median) web/baseline $(ratio "$mw" "$ms"), root/baseline $(ratio "$mr" "$ms")"
    echo "stop-to-unmounted ratio (median of paired cycles) web/baseline $(paired_ratio "${web[*]}" "${seed[*]}"), root/baseline $(paired_ratio "${root[*]}" "${seed[*]}"), root without health check/baseline $(paired_ratio "${bare[*]}" "${seed[*]}")"
    echo "reset cycle, web app (polkit, left4me-reset@): $(printf '%s\n' "${web_reset[@]}" | stats)"
    echo "reset cycle, pre-split unit + helper reset:    $(printf '%s\n' "${seed_reset[@]}" | stats)"
    echo "reset cycle ratio (median) web/baseline $(ratio "$rw" "$rs"), median of paired cycles $(paired_ratio "${web_reset[*]}" "${seed_reset[*]}")"
    echo "reset cycle, web app, one request (marker + restart): $(printf '%s\n' "${web_one[@]}" | stats)"
    echo "reset cycle ratio (median) one request/baseline $(ratio "$r1" "$rs"), median of paired cycles $(paired_ratio "${web_one[*]}" "${seed_reset[*]}") (goal <= 1.0, 0.5 ideal)"
    echo "  where it goes (medians): request to unmounted $(printf '%s\n' "${ph_stop[@]}" | median) ms; mount with reset $(printf '%s\n' "${ph_mount[@]}" | median) ms; mount to game exec (job) $(printf '%s\n' "${ph_job[@]}" | median) ms; exec to first A2S answer $(printf '%s\n' "${ph_game[@]}" | median) ms"
    echo "  polkit: a no-op start as the service user $(printf '%s\n' "${pk_user[@]}" | median) ms vs as root $(printf '%s\n' "${pk_root[@]}" | median) ms (medians of 10)"
    echo "raw one-request reset cycle ms: ${web_one[*]}"
    echo "raw stop-to-unmounted ms: web ${web[*]}; root ${root[*]}; root, health masked ${bare[*]}; baseline ${seed[*]}"
    echo "raw reset cycle ms: web ${web_reset[*]}; baseline ${seed_reset[*]}"
} | tee "$OUT/bench.txt"

# 32 instances at once: one `systemctl --no-block` call per unit, all in
# parallel, then the same for the stop. As root: 32 concurrent polkit checks
# under emulation (and a loaded host) ran into systemctl's 25 s D-Bus timeout
# ("Connection timed out"), which measures polkit, not the units.
units=()
for i in $(seq 32); do
    remove_instance "many$i"
    make_instance "many$i" $((27200 + i)) "base"
    units+=("$(unit "many$i")")
done
t0=${EPOCHREALTIME/./}
pids=()
for u in "${units[@]}"; do systemctl start --no-block "$u" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a start request of the 32 was refused"; done
for i in $(seq 32); do
    a2s-query 127.0.0.1 $((27200 + i)) --timeout 300 >/dev/null || fail "many$i does not answer within 300 s of the start request"
done
t_up=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
# `left4me list` over the 32 running instances: one systemctl call for all.
list_ms=()
for i in $(seq 5); do
    t0=${EPOCHREALTIME/./}
    n=$(left4me list | grep -c '^many[0-9]* ') || fail "left4me list failed"
    list_ms+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    [ "$n" = 32 ] || fail "left4me list shows $n of the 32 instances"
done
left4me list --json | grep -q '"name": "many32"' || fail "left4me list --json lacks many32"
t_list=$(printf '%s\n' "${list_ms[@]}" | median)
echo "left4me list, 32 running instances: $(printf '%s\n' "${list_ms[@]}" | stats)" | tee -a "$OUT/bench.txt"
[ "$t_list" -lt 500 ] || fail "left4me list with 32 instances took $t_list ms (median), over 0.5 s"
t0=${EPOCHREALTIME/./}
pids=()
for u in "${units[@]}"; do systemctl stop --no-block "$u" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a stop request of the 32 was refused"; done
for i in $(seq 32); do
    while mounted_at "$(merged "many$i")"; do
        [ $(( ${EPOCHREALTIME/./} - t0 )) -lt 120000000 ] || fail "many$i still mounted 120 s after the stop"
    done
done
t_down=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
for i in $(seq 32); do remove_instance "many$i"; done
echo "32 instances: started together until all answer A2S $t_up ms; stopped together until all unmounted $t_down ms" |
    tee -a "$OUT/bench.txt"

# Generations (docs/updates.md): what a generation that changes one file of
# a 1 GiB tree costs on disk under the default copy mode (auto: hard links on
# this ext4; reflinks need btrfs or xfs, whose tools the image lacks), and
# how long preparing plus committing it takes beside a plain `cp -a` of the
# same tree. The tree is the stand-in plus 256 files of 4 MiB; it is built
# on a tmpfs and imported, so the disk holds it once.
src=/run/left4me-bench-tree
mkdir -p "$src"; mount -t tmpfs -o size=1100M bench-tree "$src"
cp -R "$SHARE/standin/installation/." "$src/"
mkdir -p "$src/left4dead2/bench"
head -c 4M /dev/urandom > "$src/left4dead2/bench/pak000.vpk"
for i in $(seq 1 255); do cp "$src/left4dead2/bench/pak000.vpk" "$src/left4dead2/bench/pak$(printf %03d "$i").vpk"; done
sed -i 's/"buildid"\t\t"[0-9]*"/"buildid"\t\t"5000"/' "$src/steamapps/appmanifest_222860.acf"
"$HELPER" generation import "$src" >/dev/null || fail "bench: import of the 1 GiB tree failed"
umount "$src"; rmdir "$src"
base=$(gen_dir)
tree_kib=$(du -sk "$base" | cut -f1)
sync
t0=${EPOCHREALTIME/./}
cp -a "$base" /var/lib/left4me-bench-copy
sync
t_cp=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
rm -rf /var/lib/left4me-bench-copy
sync
df0=$(df -k --output=used "$GENS" | tail -n1)
t0=${EPOCHREALTIME/./}
"$HELPER" generation prepare --owner left4me-update >/dev/null || fail "bench: prepare failed"
t_prep=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
# What steamcmd does to one changed file: a new file renamed over the old.
runuser -u left4me-update -- sh -c "head -c 4M /dev/urandom > $GENS/.next/left4dead2/bench/pak007.vpk.tmp &&
    mv $GENS/.next/left4dead2/bench/pak007.vpk.tmp $GENS/.next/left4dead2/bench/pak007.vpk &&
    sed 's/\"5000\"/\"5001\"/' $GENS/.next/steamapps/appmanifest_222860.acf > $GENS/.next/steamapps/m.tmp &&
    mv $GENS/.next/steamapps/m.tmp $GENS/.next/steamapps/appmanifest_222860.acf" || fail "bench: the change as the update user failed"
t0=${EPOCHREALTIME/./}
"$HELPER" generation commit --restart never >/dev/null || fail "bench: commit failed"
t_commit=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
sync
df1=$(df -k --output=used "$GENS" | tail -n1)
new=$(gen_dir)
[ "$new" != "$base" ] || fail "bench: no new generation"
added=$(du -sk "$base" "$new" | tail -n1 | cut -f1)
{
    echo "generation of a $((tree_kib / 1024)) MiB tree with one 4 MiB file changed ($(findmnt -n -o FSTYPE -T "$GENS"), auto = hard links):"
    echo "  disk: du of the new generation beyond the old ${added} KiB; df used +$((df1 - df0)) KiB"
    echo "  time: prepare ${t_prep} ms + commit ${t_commit} ms = $((t_prep + t_commit)) ms; cp -a of the same tree ${t_cp} ms; ratio $(ratio $((t_prep + t_commit)) "$t_cp")"
} | tee -a "$OUT/bench.txt"
"$HELPER" generation gc --keep 1 >/dev/null || fail "bench: gc failed"
