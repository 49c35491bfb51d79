# 12. Layer stacks past the legacy one-page option limit, on the distribution's
#     own kernel. 120 overlays with 64-character names: their paths alone take
#     ~9 KB, yet they mount everywhere (layers reach overlayfs as
#     /proc/self/fd/N). 300 overlays: Linux >= 6.8 appends them one by one
#     ("lowerdir+") and mounts; older kernels must refuse with exit 17 and a
#     message saying why, leaving nothing mounted.
#     Through the helper directly: the instances never run a game.
# budget: 400
remove_instance wide
remove_instance huge
long=$(printf 'x%.0s' {1..58})
names=()
for i in $(seq -w 1 120); do
    names+=("o${i}-$long")
    make_overlay "o${i}-$long" "layer$i.txt=$i" "winner.txt=$i"
done
make_instance wide 27040 "${names[*]}"
"$HELPER" mount wide || fail "120 overlays with 64-character names did not mount"
[ "$(cat "$(merged wide)/winner.txt")" = 001 ] || fail "the first overlay does not win"
[ "$(cat "$(merged wide)/layer120.txt")" = 120 ] || fail "the 120th overlay is not visible"
"$HELPER" umount wide || fail "umount of the wide stack failed"

names=()
for i in $(seq -w 1 300); do
    names+=("h$i")
    mkdir -p "$STATE/overlays/h$i"
done
make_instance huge 27041 "${names[*]}"
release=$(uname -r)
IFS=.- read -r major minor _ <<< "$release"
set +e
out=$("$HELPER" mount huge 2>&1); rc=$?
set -e
echo "left4me-overlay mount huge (300 overlays) on Linux $release: exit $rc"
echo "$out"
if (( major > 6 || (major == 6 && minor >= 8) )); then
    [ $rc -eq 0 ] || fail "Linux $release has lowerdir+ but 300 overlays did not mount"
    is_mounted huge || fail "reported mounted, but nothing is at $(merged huge)"
    "$HELPER" umount huge
else
    [ $rc -eq 17 ] || fail "expected exit 17 (kernel limit) on Linux $release, got $rc"
    [[ $out == *"lower layers need"*"accepts one page"* ]] || fail "the refusal does not say why"
    is_mounted huge && fail "a refused mount left something mounted"
fi
remove_instance wide
remove_instance huge
rm -rf "$STATE"/overlays/o*-"$long" "$STATE"/overlays/h[0-9]*
