# 2. Two overlays and a per-instance layer: mounted, A2S answers with the
#    hostname the top layer sets, lower-priority files shadowed correctly.
# budget: 60
standard_overlays
remove_instance two
make_instance two 27020 "top base" "instance two"
printf 'layer\n' > "$STATE/instances/two/layer/left4dead2/shadow.txt"

start_instance two
m=$(merged two)
[ "$(findmnt -n -o FSTYPE --target "$m")" = overlay ] || fail "$m is not an overlay mount"
expect_a2s 27020 "instance two"
[ "$(cat "$m/left4dead2/shadow.txt")" = layer ] || fail "instance layer does not shadow base"
[ "$(cat "$m/left4dead2/both.txt")" = top ] || fail "overlay 'top' does not shadow 'base'"
[ "$(cat "$m/left4dead2/base-only.txt")" = base ] || fail "base-only file not visible"
[ "$(cat "$m/left4dead2/top-only.txt")" = top ] || fail "top-only file not visible"
grep -q 'left4me stand-in' "$m/left4dead2/gameinfo.txt" || fail "installation not visible"
[ -s "$STATE/runtime/two/upper/left4dead2/logs/standin.log" ] ||
    fail "the game's log did not land in the upper layer"
[ ! -e "$(gen_dir)/left4dead2/logs" ] || fail "the game wrote into its generation $(gen_dir)"

st=$("$HELPER" status two) || fail "left4me-overlay status two failed"
echo "$st"
echo "$st" | grep -q top && echo "$st" | grep -q base || fail "status does not show the layer stack"
json=$("$HELPER" status two --json) && [ -n "$json" ] || fail "status two --json failed or printed nothing"
