# 21. The game's $HOME and the 32-bit loader path: each instance has a
#     writable home in runtime/NAME/home (0710: the health check, another
#     user in the service group, opens the events file in it by name and can
#     read nothing else); ~/.steam/sdk32/steamclient.so
#     links to the installation's bin/steamclient.so when there is one (and
#     the dynamically linked i386 stand-in loads it under the sandbox); the
#     game's process maps the i386 loader, libc, libstdc++ and libgcc_s; a
#     reset empties the home.
# budget: 60
remove_instance hom
make_instance hom 27031 "" "home test"
home=$STATE/runtime/hom/home
link=$home/.steam/sdk32/steamclient.so
target=$STATE/runtime/hom/merged/bin/steamclient.so
log=$STATE/runtime/hom/upper/left4dead2/logs/standin.log

start_instance hom
expect_a2s 27031 "home test"
[ "$(stat -c '%U:%G %a' "$home")" = "left4me:left4me 710" ] ||
    fail "$home is $(stat -c '%U:%G %a' "$home"), expected left4me:left4me 710"
[ -L "$link" ] && [ "$(readlink "$link")" = "$target" ] ||
    fail "$link is not a link to $target ($(ls -l "$link" 2>&1))"
[ "$(stat -c %U "$link")" = left4me ] || fail "$link was not made by the service user"
grep -q "steam: loaded $link" "$log" || fail "the game did not load steamclient.so through $link: $(grep steam: "$log")"
grep -q "steam: HOME $home is writable" "$log" || fail "the game's HOME is not writable: $(grep steam: "$log")"
[ "$(stat -c %U "$home/.standin-home")" = left4me ] || fail "$home/.standin-home missing or not the service user's"
others=$(find "$home" -mindepth 1 ! -type l ! -path "$home/.left4me-events.json" -perm /g=rwx,o=rwx)
[ -z "$others" ] || fail "the group or others may use what the game wrote in its home: $others"
pid=$(systemctl show -P MainPID "$(unit hom)")
environ=$(tr '\0' '\n' < "/proc/$pid/environ")
grep -qx "HOME=$home" <<<"$environ" || fail "the game's HOME is not $home"
mapped=$(awk '{print $6}' "/proc/$pid/maps" | sort -u)
for lib in ld-linux.so.2 libc.so.6 libstdc++.so.6 libgcc_s.so.1 steamclient.so; do
    # The mapped file is the soname or the file it links to (libstdc++.so.6.0.33).
    found=
    while read -r path; do
        b=${path##*/}
        if [[ $b == "$lib" || $b == "$lib".[0-9]* ]]; then found=$path; fi
    done <<<"$mapped"
    [ -n "$found" ] || fail "the game (pid $pid) has no $lib mapped"
done
[ "$(od -An -tx1 -j4 -N1 "/proc/$pid/exe" | tr -d ' ')" = 01 ] || fail "the game (pid $pid) is not a 32-bit ELF"
note "HOME $home, sdk32 link, i386 loader and libraries in the game: ok"
stop_instance hom

# No steamclient.so in the installation: the link goes, the game says so.
# A test shortcut: a committed generation never changes, but nothing mounts
# this one meanwhile, and the file comes back below.
gen=$(gen_dir)
mv "$gen/bin/steamclient.so" /var/tmp/steamclient.so.aside
start_instance hom
# The link is removed in ExecStart= before the game starts, so only once the
# game has reported the missing library is the absence a result.
deadline=$(( $(now_ms) + 10000 ))
until grep -q "steam: dlopen failed trying to load: $link" "$log"; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "the game did not report the missing steamclient.so"
    sleep 0.2
done
[ ! -e "$link" ] && [ ! -L "$link" ] || fail "$link still there without bin/steamclient.so"
stop_instance hom
mv /var/tmp/steamclient.so.aside "$gen/bin/steamclient.so"

# A reset means a clean state: the home too.
systemctl start --wait "$(reset_unit hom)" || fail "reset of hom failed"
[ -d "$home" ] && [ -z "$(ls -A "$home")" ] || fail "$home not empty after reset: $(ls -A "$home")"
[ "$(stat -c '%U:%G %a' "$home")" = "left4me:left4me 710" ] || fail "$home after reset is $(stat -c '%U:%G %a' "$home")"
start_instance hom
# ExecStart= links before it execs the game: once the game answers.
expect_a2s 27031 "home test"
[ -L "$link" ] || fail "$link not recreated after the reset"
stop_instance hom
remove_instance hom
