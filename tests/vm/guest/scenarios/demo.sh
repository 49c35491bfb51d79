# The README demo, inside the VM: one instance with one shared overlay.
# budget: 300
ms_since() { echo $(( ($(now_ms) - $1) )); }
install_standin
make_overlay demo-cfg "left4dead2/cfg/server.cfg=hostname \"left4me demo server\"" \
    "left4dead2/addons/demo-plugin.txt=a plugin from the demo-cfg overlay"
remove_instance demo
echo
echo "### left4me create demo --port 27015 --overlays demo-cfg --args \"+map c1m1_hotel -console\""
left4me create demo --port 27015 --overlays demo-cfg --args "+map c1m1_hotel -console" ||
    fail "left4me create failed"

echo; echo "### systemctl start left4me-server@demo"
t=$(now_ms); start_instance demo; t_start=$(ms_since "$t")
t=$(now_ms)
name=$(a2s-query 127.0.0.1 27015 --timeout 30) || fail "demo server does not answer"
t_a2s=$(ms_since "$t")
echo "A2S_INFO 127.0.0.1:27015 -> hostname \"$name\", map \"$(a2s-query 127.0.0.1 27015 --map)\""

echo; echo "### left4me list"
left4me list
left4me list | grep -q '^demo ' || fail "left4me list does not show demo"

echo; echo "### left4me-overlay status demo"
"$HELPER" status demo

echo; echo "### the game writes into its dir (lands in the upper layer)"
runuser -u left4me -- sh -c "echo 'player data' > $(merged demo)/left4dead2/written-by-game.txt"
ls -l "$STATE/runtime/demo/upper/left4dead2/"

echo; echo "### reset, as the web app: the marker instances/demo/reset-at-start, one request 'restart demo' on $REQUESTS_SOCK"
t=$(now_ms)
runuser -u left4me -- sh -c ": > $STATE/instances/demo/reset-at-start"
request_ok "restart demo"
a2s-query 127.0.0.1 27015 --timeout 30 >/dev/null || fail "no answer after reset"
t_restart=$(ms_since "$t")
[ ! -e "$(merged demo)/left4dead2/written-by-game.txt" ] || fail "reset left the game's file"
echo "written-by-game.txt is gone; instance.env and the overlay are untouched"
"$HELPER" status demo
echo; echo "### left4me stop demo"
t=$(now_ms); left4me stop demo || fail "left4me stop failed"; t_stop=$(ms_since "$t")
wait_unmounted demo 15

echo; echo "### timings (this VM, $(systemd-detect-virt 2>/dev/null || echo vm))"
echo "start (mount + exec):           $t_start ms"
echo "first A2S answer after start:   $t_a2s ms"
echo "stop (SIGINT; umount queued):   $t_stop ms"
echo "reset (one restart) + first answer: $t_restart ms"
