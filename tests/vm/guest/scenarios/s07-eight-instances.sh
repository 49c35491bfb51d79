# 7. Eight instances at once on distinct ports: all answer, all stop cleanly.
# budget: 600
standard_overlays
names=()
for i in 1 2 3 4 5 6 7 8; do
    remove_instance "eight$i"
    make_instance "eight$i" $((27100 + i)) "top base" "eight number $i"
    names+=("$(unit "eight$i")")
done
systemctl start "${names[@]}" || fail "starting eight instances failed"
for i in 1 2 3 4 5 6 7 8; do
    wait_state "eight$i" active 30
    expect_a2s $((27100 + i)) "eight number $i" 30
done
systemctl stop "${names[@]}" || fail "stopping eight instances failed"
for i in 1 2 3 4 5 6 7 8; do
    wait_unmounted "eight$i" 30
    [ -z "$(ns_holders "eight$i")" ] || fail "eight$i held by $(ns_holders "eight$i")"
    [ "$(systemctl show -P Result "$(unit "eight$i")")" = success ] || fail "eight$i did not stop cleanly"
done
for i in 1 2 3 4 5 6 7 8; do remove_instance "eight$i"; done
