# 11. systemd-analyze security: record the exposure score; fail above systemd's OK band.
# budget: 60
standard_overlays
remove_instance sec
make_instance sec 27026 "base" "sec"
report=$(systemd-analyze security --no-pager "$(unit sec)") || fail "systemd-analyze security failed"
line=$(echo "$report" | grep 'Overall exposure level') || fail "no exposure level in the report"
echo "$line"
score=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) .*/\1/p')
[ -n "$score" ] || fail "cannot parse a score from: $line"
echo "$line" | sed 's/.*: //' > "$OUT/security-score"
# Below 5.0 is systemd's "OK" band; MEDIUM and worse means the sandbox regressed.
max=${LEFT4ME_MAX_EXPOSURE:-4.9}
[[ $score =~ ^[0-9]+\.[0-9]$ && $max =~ ^[0-9]+\.[0-9]$ ]] || fail "unexpected score format $score"
[ "${score/./}" -le "${max/./}" ] || fail "exposure $score above $max"
remove_instance sec
