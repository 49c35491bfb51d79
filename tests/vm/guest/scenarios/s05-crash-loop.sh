# 5. Crash loop: a stand-in that exits non-zero at once ends in `failed`
#    after StartLimitBurst, with the overlay unmounted.
# budget: 300
standard_overlays
remove_instance crash
make_instance crash 27023 "base" "crashing"
: > "$STATE/instances/crash/layer/left4dead2/crash"
burst=$(systemctl show -P StartLimitBurst "$(unit crash)")
systemctl start --no-block "$(unit crash)"
# Settled = failed with no restart pending for longer than RestartSec=5;
# allow RestartSec times the burst plus slack for an emulated CPU.
deadline=$(( $(now_ms) + (burst * 5 + 90) * 1000 ))
settled=0
while [ "$settled" -lt 8 ]; do
    [ "$(now_ms)" -lt "$deadline" ] ||
        fail "crash loop did not settle (state $(active_state crash), result $(systemctl show -P Result "$(unit crash)"))"
    if [ "$(active_state crash)" = failed ] && [[ $(systemctl list-jobs --no-legend) != *"$(unit crash)"* ]]; then
        settled=$((settled + 1))
    else
        settled=0
    fi
    sleep 1
done
result=$(systemctl show -P Result "$(unit crash)")
starts=$(unit_journal crash | grep -c 'crashing on purpose' || true)
[ "$starts" -ge "$burst" ] || fail "settled in failed after only $starts crashes (StartLimitBurst $burst, result $result)"
is_mounted crash && fail "overlay still mounted after the crash loop"
[ -z "$(ns_holders crash)" ] || fail "namespaces $(ns_holders crash) hold the crashed overlay"
note "failed for good after $starts starts (burst $burst, result $result), overlay unmounted"
remove_instance crash
