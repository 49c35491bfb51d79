# Benchmark figures (printed, not asserted beyond "the cycle worked"):
# stop-to-unmounted latency over 20 cycles, reset cycle over 10 cycles.
install_standin
make_overlay base "left4dead2/cfg/server.cfg=hostname \"bench base\""
remove_instance bench
make_instance bench 27040 "base" "bench"
m=$(merged bench)

# Median and p95 (nearest rank) of integers in ms, one per line on stdin.
stats() {
    local -a v
    mapfile -t v < <(sort -n)
    local n=${#v[@]}
    local p95=$(( (95 * n + 99) / 100 - 1 ))
    echo "median $(( v[(n - 1) / 2] )) ms, p95 ${v[p95]} ms, min ${v[0]} ms, max ${v[n - 1]} ms (n=$n)"
}

stop_ms=()
for i in $(seq 20); do
    start_instance bench
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "cycle $i: no A2S answer"
    t0=${EPOCHREALTIME/./}
    systemctl stop --no-block "$(unit bench)"
    # Tight pure-bash poll of PID 1's mount table: no fork per iteration.
    while mounted_at "$m"; do
        [ $(( ${EPOCHREALTIME/./} - t0 )) -lt 30000000 ] || fail "cycle $i: still mounted after 30 s"
    done
    stop_ms+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    wait_state bench inactive 30
done

reset_ms=()
for i in $(seq 10); do
    start_instance bench
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "reset cycle $i: not answering before"
    t0=${EPOCHREALTIME/./}
    systemctl stop "$(unit bench)"
    "$HELPER" reset bench || fail "reset cycle $i: reset failed"
    systemctl start "$(unit bench)"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "reset cycle $i: no A2S answer after reset"
    reset_ms+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
done
systemctl stop "$(unit bench)"

{
    echo "stop-to-unmounted: $(printf '%s\n' "${stop_ms[@]}" | stats)"
    echo "reset cycle (stop, reset, start, first A2S answer): $(printf '%s\n' "${reset_ms[@]}" | stats)"
    echo "raw stop-to-unmounted ms: ${stop_ms[*]}"
    echo "raw reset cycle ms: ${reset_ms[*]}"
} | tee "$OUT/bench.txt"
remove_instance bench
