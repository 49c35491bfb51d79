# 44. Migration of a host from before generations (docs/updates.md): the game
#     in a plain installation/, no installations/current. Mounts keep using
#     installation/; the first generation verb renames it into
#     installations/<id>/ and writes current, the admin moving nothing. An
#     instance mounted from installation/ keeps running through the rename,
#     and while it is up collection removes nothing. An empty installation/
#     is not taken.
# budget: 60
standard_overlays
remove_instance mg
make_instance mg 27049 "base" "migrate"
aside=/var/tmp/left4me-gens.aside
rm -rf "$aside"
mv "$GENS" "$aside"
trap 'remove_instance mg; rm -rf "$GENS" "$STATE/installation" /var/tmp/left4me-b1001; mv "$aside" "$GENS"' EXIT
# What a host upgraded from a version before generations has: its
# installation/, and the empty installations/ the new package's tmpfiles made.
mkdir -m 0755 "$GENS"

# An empty installation/ is no game: nothing is migrated.
mkdir -m 0755 "$STATE/installation"
out=$("$HELPER" generation list 2>&1) || true
[ -d "$STATE/installation" ] && [ ! -e "$GENS/current" ] && [ -z "$(gen_ids)" ] ||
    fail "an empty installation/ was migrated: $(ls -la "$GENS")"
note "empty installation/: not migrated (generation list: $(head -n 2 <<<"$out" | tr '\n' ' '))"
rmdir "$STATE/installation"

cp -a "$SHARE/standin/installation" "$STATE/installation"
chown -R root:root "$STATE/installation"
want=$(tree_sum "$STATE/installation")
# Before the migration a mount uses installation/ as it always did.
start_instance mg
expect_a2s 27049 "migrate"
[ -d "$STATE/installation" ] && [ ! -e "$GENS/current" ] || fail "a mount migrated installation/ (only generation verbs do)"
note "mg mounted from installation/; status generation '$(status_field mg generation)'"

list=$("$HELPER" generation list) || fail "generation list failed on a host to migrate"
echo "$list"
[ ! -e "$STATE/installation" ] || fail "installation/ still there after generation list"
g1=$(gen_current)
[[ $g1 =~ ^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$ ]] || fail "current names '$g1', not a generation id"
[ "$(gen_ids)" = "$g1" ] || fail "generations after migration: $(gen_ids | tr '\n' ' ')"
[ "$(tree_sum "$GENS/$g1")" = "$want" ] || fail "the migrated tree differs from installation/"
grep -q 'left4me stand-in' "$(merged mg)/left4dead2/gameinfo.txt" || fail "mg lost its game files in the rename"
expect_a2s 27049 "migrate"
note "installation/ became generation $g1; mg, mounted from installation/, still answers"

# A second build; the migrated one is then old, but mg (mounted before
# generations, its record names none) may be on it: nothing is collected.
rm -rf /var/tmp/left4me-b1001
cp -R "$SHARE/standin/installation" /var/tmp/left4me-b1001
sed -i 's/"buildid"\t\t"[0-9]*"/"buildid"\t\t"1001"/' /var/tmp/left4me-b1001/steamapps/appmanifest_222860.acf
"$HELPER" generation import --keep 1 --restart never /var/tmp/left4me-b1001 || fail "import of build 1001 failed"
g2=$(gen_current)
[ "$g2" != "$g1" ] || fail "import of build 1001 did not switch"
"$HELPER" generation gc --keep 1 || fail "generation gc failed"
[ "$(gen_ids | tr '\n' ' ')" = "$g1 $g2 " ] || fail "gc with an instance mounted from installation/ up: $(gen_ids | tr '\n' ' '), expected $g1 $g2"
stop_instance mg
"$HELPER" generation gc --keep 1 || fail "generation gc failed"
[ "$(gen_ids)" = "$g2" ] || fail "gc after mg stopped: $(gen_ids | tr '\n' ' '), expected $g2"
start_instance mg
[ "$(status_field mg generation)" = "$g2" ] || fail "mg restarted on '$(status_field mg generation)', expected $g2"
note "nothing collected while mg ran from installation/; after its stop $g1 went; mg restarted on $g2"
stop_instance mg
