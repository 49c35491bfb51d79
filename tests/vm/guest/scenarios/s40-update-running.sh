# 40. An update while two instances run (docs/updates.md): left4me-update.service
#     with the fake steamcmd builds the next generation; the running
#     instances keep their mounts, their generation and every file they see,
#     and keep answering; a new start runs the new build; `generation list`
#     shows both. Prints what the new generation costs on disk.
# budget: 100
standard_overlays
install_fake_steamcmd
trap restore_host_env EXIT
# never: this scenario is about what an update leaves alone; the policies
# that restart are s41's.
set_host_env LEFT4ME_UPDATE_RESTART=never
for i in ua ub uc; do remove_instance "$i"; done
make_instance ua 27041 "base" "update a"
make_instance ub 27042 "top base" "update b"
make_instance uc 27043 "base" "update c"
start_instance ua; start_instance ub
expect_a2s 27041 "update a"; expect_a2s 27042 "update b"

old=$(gen_current)
old_build=$(sed -n 's/^[[:space:]]*"buildid"[[:space:]]*"\([0-9]*\)".*/\1/p' "$GENS/$old/steamapps/appmanifest_222860.acf")
[ -n "$old_build" ] || fail "no build id in $GENS/$old's appmanifest"
new_build=$((old_build + 1))
files=$(cd "$GENS/$old" && find . -type f | LC_ALL=C sort)
# What an instance sees of the game's files, read through its merged/.
seen() { (cd "$(merged "$1")" && xargs -d '\n' sha256sum <<<"$files") | sha256sum | cut -d' ' -f1; }
mountline() { grep -F " $(merged "$1") " /proc/1/mountinfo; }
declare -A pid mnt sum
for i in ua ub; do
    [ "$(status_field "$i" generation)" = "$old" ] || fail "$i: status generation '$(status_field "$i" generation)', expected $old"
    [ "$(status_field "$i" generation_current)" = true ] || fail "$i: status says its generation is not current"
    [ "$(env_generation "$i")" = "$old" ] || fail "$i: LEFT4ME_GENERATION='$(env_generation "$i")', expected $old"
    pid[$i]=$(systemctl show -P MainPID "$(unit "$i")")
    mnt[$i]=$(mountline "$i")
    sum[$i]=$(seen "$i")
done
old_tree=$(tree_sum "$GENS/$old")

fake_steamcmd_conf "$new_build" ok
t0=$(now_ms)
run_update || fail "left4me-update.service failed: $(update_journal | tail -n 20)"
t_update=$(( $(now_ms) - t0 ))
journal=$(update_journal)
grep -q "Success! App '222860' fully installed." <<<"$journal" || fail "the fake steamcmd did not run to its end: $journal"
grep -q "running as left4me-update, HOME /var/lib/left4me-update" <<<"$journal" || fail "steamcmd did not run as left4me-update with its own HOME: $journal"
[ "$(stat -c %U /var/lib/left4me-update/Steam/logs/fake-runs.txt)" = left4me-update ] || fail "steamcmd's HOME is not the update user's"

new=$(gen_current)
[ "$new" != "$old" ] || fail "current still names $old after the update"
[ ! -e "$GENS/.next" ] || fail "$GENS/.next left after a successful update"
grep -q "\"buildid\"[[:space:]]*\"$new_build\"" "$GENS/$new/steamapps/appmanifest_222860.acf" || fail "$new is not build $new_build"
[ "$(tree_sum "$GENS/$old")" = "$old_tree" ] || fail "the update changed the old generation $old"
# Root's now, nothing the update user could still change.
odd=$(find "$GENS/$new" \( ! -user root -o ! -group root -o -perm /g+w,o+w,u+s,g+s \) -printf '%p %u:%g %m\n' | head -5)
[ -z "$odd" ] || fail "entries of $new not root's or writable by others: $odd"
[ "$(stat -c '%U %a' "$GENS/current")" = "root 644" ] && [ -f "$GENS/current" ] && [ ! -L "$GENS/current" ] ||
    fail "installations/current is $(stat -c '%F %U %a' "$GENS/current")"

for i in ua ub; do
    [ "$(systemctl show -P MainPID "$(unit "$i")")" = "${pid[$i]}" ] || fail "$i was restarted by the update (policy never)"
    [ "$(mountline "$i")" = "${mnt[$i]}" ] || fail "$i's mount changed: ${mnt[$i]} -> $(mountline "$i")"
    [ "$(seen "$i")" = "${sum[$i]}" ] || fail "$i sees changed game files after the update"
    [ "$(status_field "$i" generation)" = "$old" ] || fail "$i: status generation is '$(status_field "$i" generation)' after the update, expected $old"
    [ "$(status_field "$i" generation_current)" = false ] || fail "$i: status does not say its generation is no longer current"
done
grep -qx "buildid=$old_build" "$(merged ua)/left4dead2/steam.inf" || fail "ua sees steam.inf $(cat "$(merged ua)/left4dead2/steam.inf")"
expect_a2s 27041 "update a"; expect_a2s 27042 "update b"

# A start after the update runs the new build.
start_instance uc
expect_a2s 27043 "update c"
[ "$(status_field uc generation)" = "$new" ] || fail "uc started on '$(status_field uc generation)', expected $new"
[ "$(env_generation uc)" = "$new" ] || fail "uc: LEFT4ME_GENERATION='$(env_generation uc)', expected $new"
grep -qx "buildid=$new_build" "$(merged uc)/left4dead2/steam.inf" || fail "uc does not see the new steam.inf"
[ "$(cat "$(merged uc)/left4dead2/update-notes.txt")" = "build $new_build" ] || fail "uc does not see the new update-notes.txt"
[ ! -e "$(merged ua)/left4dead2/update-notes.txt" ] || fail "ua sees a file of the new build"

list=$("$HELPER" generation list) || fail "generation list failed"
echo "$list"
grep -q "$old" <<<"$list" && grep -q "$new" <<<"$list" || fail "generation list lacks $old or $new"
grep "$old" <<<"$list" | grep -q ua || fail "generation list does not say ua uses $old"
grep "$new" <<<"$list" | grep -q uc || fail "generation list does not say uc uses $new"
grep -q "$new_build" <<<"$list" || fail "generation list does not show build $new_build"

# The price of the new generation: du counts a hard-linked file once, under
# the first tree named, so the second figure is what the update added.
fs=$(findmnt -n -o FSTYPE -T "$GENS")
g=left4dead2/gameinfo.txt
if [ "$(stat -c %i "$GENS/$old/$g")" = "$(stat -c %i "$GENS/$new/$g")" ]; then how="hard links"; else how="reflinks or copies"; fi
du_old=$(du -sk "$GENS/$old" | cut -f1)
du_new=$(du -sk "$GENS/$old" "$GENS/$new" | tail -n1 | cut -f1)
note "update: ${t_update} ms; $fs, unchanged files as $how; old generation ${du_old} KiB, new one adds ${du_new} KiB"
echo "s40 update ${t_update} ms, $fs ($how): old generation ${du_old} KiB, new generation adds ${du_new} KiB" >> "$OUT/update-figures"
for i in ua ub uc; do stop_instance "$i"; remove_instance "$i"; done
