# 5. Crash loop: a stand-in that exits non-zero at once ends in `failed`
#    after StartLimitBurst, with the overlay unmounted.
remove_instance crash
make_instance crash 27023 "base" "crashing"
: > "$STATE/instances/crash/layer/left4dead2/crash"
burst=$(systemctl show -P StartLimitBurst "$(unit crash)")
systemctl start --no-block "$(unit crash)"
# RestartSec=5 times the burst, plus slack for an emulated CPU.
deadline=$(( $(now_ms) + (burst * 5 + 90) * 1000 ))
while [ "$(systemctl show -P Result "$(unit crash)")" != start-limit-hit ]; do
    [ "$(now_ms)" -lt "$deadline" ] ||
        fail "no start-limit-hit (state $(active_state crash), result $(systemctl show -P Result "$(unit crash)"))"
    sleep 1
done
[ "$(active_state crash)" = failed ] || fail "state is $(active_state crash), not failed"
starts=$(unit_journal crash | grep -c 'crashing on purpose' || true)
[ "$starts" -ge "$burst" ] || fail "only $starts crashes logged, StartLimitBurst is $burst"
is_mounted crash && fail "overlay still mounted after the crash loop"
[ -z "$(ns_holders crash)" ] || fail "namespaces $(ns_holders crash) hold the crashed overlay"
note "failed after $starts starts (burst $burst), overlay unmounted"
remove_instance crash
