# 9. A symlink planted at runtime/<i>/merged: the start fails with a clear
#    journal message and nothing is mounted anywhere else.
# budget: 60
standard_overlays
remove_instance nine
make_instance nine 27025 "base" "nine"
start_instance nine
stop_instance nine
target=/var/tmp/left4me-planted
rm -rf "$target"; mkdir -p "$target"; chown left4me: "$target"
m=$(merged nine)
# The service user first: runtime/nine is root:left4me 0750 (the helper
# makes it so), so it can neither remove merged/ nor put a link in its place.
if runuser -u left4me -- sh -c "rm -rf '$m' && ln -s '$target' '$m'" 2>/tmp/plant.err; then
    fail "left4me replaced $m with a symlink: runtime/nine is writable by the service user"
fi
note "left4me cannot plant the symlink: $(cat /tmp/plant.err)"
[ -d "$m" ] && [ ! -L "$m" ] || fail "$m changed although planting failed"
# Worst case anyway (a mistake in modes elsewhere): root plants it.
rm -rf "$m"; ln -s "$target" "$m"
[ -L "$m" ] || fail "could not plant the symlink"
since=$(date '+%Y-%m-%d %H:%M:%S')
if systemctl start "$(unit nine)" 2>/dev/null; then
    fail "start succeeded with merged/ a symlink"
fi
sleep 1
journal=$(UNIT=$(overlay_unit nine) unit_journal nine "$since")
echo "$journal" | tail -n 20
echo "$journal" | grep -qi 'symlink' || fail "journal does not say that merged/ is a symlink"
# The helper's own entry carries structured fields: the instance and the verb.
fields=$(journalctl --since "$since" --no-pager -o cat LEFT4ME_INSTANCE=nine LEFT4ME_VERB=mount)
echo "journalctl LEFT4ME_INSTANCE=nine LEFT4ME_VERB=mount: $fields"
case $fields in
    *"runtime/nine/merged is a symlink"*) ;;
    *) fail "no journal entry with LEFT4ME_INSTANCE=nine LEFT4ME_VERB=mount naming the symlink" ;;
esac
mounted_at "$target" && fail "something got mounted at the symlink's target $target"
grep -qF "$target" /proc/1/mountinfo && fail "a mount under $target exists"
systemctl stop "$(unit nine)" "$(overlay_unit nine)" 2>/dev/null || true
rm -f "$m"; rm -rf "$target"
remove_instance nine
