# 44. Migration of a host from before generations (docs/updates.md): the game
#     in a plain installation/, no installations/current. The first mount
#     renames it into installations/<id>/ and writes current, without the
#     admin moving anything; an empty installation/ is not taken.
standard_overlays
remove_instance mg
make_instance mg 27049 "base" "migrate"
aside=/var/tmp/left4me-gens.aside
rm -rf "$aside"
mv "$GENS" "$aside"
trap 'rm -rf "$GENS" "$STATE/installation"; mv "$aside" "$GENS"' EXIT
# What a host upgraded from a version before generations has: its
# installation/, and the installations/ the new package's tmpfiles made.
mkdir -m 0755 "$GENS"
cp -a "$SHARE/standin/installation" "$STATE/installation"
chown -R root:root "$STATE/installation"
want=$(tree_sum "$STATE/installation")

# An empty installation/ is no game: the mount fails and says so, nothing moves.
mv "$STATE/installation" /var/tmp/left4me-inst.aside
mkdir -m 0755 "$STATE/installation"
if "$HELPER" generation list >/tmp/mg.out 2>&1; then :; fi
[ -d "$STATE/installation" ] && [ ! -e "$GENS/current" ] || fail "an empty installation/ was migrated: $(ls -la "$GENS")"
note "empty installation/: not migrated ($(head -n 2 /tmp/mg.out | tr '\n' ' '))"
rmdir "$STATE/installation"
mv /var/tmp/left4me-inst.aside "$STATE/installation"

start_instance mg
expect_a2s 27049 "migrate"
[ ! -e "$STATE/installation" ] || fail "installation/ still there after the first mount"
id=$(gen_current)
[[ $id =~ ^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$ ]] || fail "current names '$id', not a generation id"
[ "$(gen_ids)" = "$id" ] || fail "generations after migration: $(gen_ids | tr '\n' ' ')"
[ "$(tree_sum "$GENS/$id")" = "$want" ] || fail "the migrated tree differs from installation/"
[ "$(status_field mg generation)" = "$id" ] || fail "mg runs on '$(status_field mg generation)', expected $id"
note "installation/ became generation $id on the first mount; mg answers"
stop_instance mg; remove_instance mg
