# 14. Removing the package while instances run: the removal stops them
#     first, so no overlay stays mounted (the helper their stop needs goes
#     with the package), and keeps all data; purge then drops the links of
#     instances enabled for boot, still keeping the data. (An upgrade never
#     stops them: s10.)
# budget: 200
standard_overlays
deb=$(local_deb)
for i in rm1 rm2; do remove_instance "$i"; done
make_instance rm1 27031 "base" "instance rm1"
make_instance rm2 27032 "top base" "instance rm2"
start_instance rm1
start_instance rm2
expect_a2s 27031 "instance rm1"
systemctl enable "$(unit rm1)" >/dev/null 2>&1 || fail "systemctl enable $(unit rm1) failed"
link=/etc/systemd/system/multi-user.target.wants/$(unit rm1)
[ -L "$link" ] || fail "enable made no link $link"

DEBIAN_FRONTEND=noninteractive apt-get remove -y -q left4me || fail "apt-get remove with instances running failed"
for i in rm1 rm2; do
    state=$(active_state "$i")
    [ "$state" != active ] || fail "$(unit "$i") still active after remove"
    is_mounted "$i" && fail "$(merged "$i") still mounted after remove"
    holders=$(ns_holders "$i")
    [ -z "$holders" ] || fail "$(merged "$i") still mounted in the namespaces of PIDs $holders"
    [ -f "$STATE/instances/$i/instance.env" ] || fail "remove deleted $i's instance.env"
    [ -d "$STATE/runtime/$i/upper" ] || fail "remove deleted $i's writable layer"
    note "$i: $state, unmounted, data kept"
done
running=$(systemctl list-units --plain --no-legend --state=active 'left4me-*@*.service' | awk '{print $1}')
[ -z "$running" ] || fail "left4me units still active after remove: $running"
[ -x "$(gen_dir)/srcds_run" ] || fail "remove deleted the current generation"
[ -L "$link" ] || fail "remove (not purge) dropped the enable link; a reinstall would lose it"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -q left4me || fail "apt-get purge failed"
[ -L "$link" ] && fail "purge left the enable link $link"
leftover=$(find /etc/systemd/system -name 'left4me-*@*.service' -type l)
[ -z "$leftover" ] || fail "purge left links: $leftover"
[ -f "$STATE/instances/rm1/instance.env" ] || fail "purge deleted instance.env"
[ -d "$STATE/runtime/rm1/upper" ] || fail "purge deleted the writable layer"
[ -e /etc/left4me/host.env ] && fail "purge left /etc/left4me/host.env"
note "purge: links gone, data kept"

# Back to the version under test for the rest of the run.
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" || fail "reinstall after purge failed"
start_instance rm1
expect_a2s 27031 "instance rm1"
for i in rm1 rm2; do remove_instance "$i"; done
