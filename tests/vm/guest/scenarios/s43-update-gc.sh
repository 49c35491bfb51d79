# 43. Collection of old generations (docs/updates.md), LEFT4ME_UPDATE_KEEP=2:
#     after each update the generations no mounted instance uses are removed
#     beyond the newest two; the one a running instance uses is kept until it
#     stops; the current one is always kept.
# budget: 90
standard_overlays
install_fake_steamcmd
trap restore_host_env EXIT
set_host_env LEFT4ME_UPDATE_RESTART=never LEFT4ME_UPDATE_KEEP=2
remove_instance gk
make_instance gk 27048 "base" "gc k"
build_of() { sed -n 's/^[[:space:]]*"buildid"[[:space:]]*"\([0-9]*\)".*/\1/p' "$GENS/$1/steamapps/appmanifest_222860.acf"; }
update_to_next() {
    fake_steamcmd_conf $(( $(build_of "$(gen_current)") + 1 )) ok
    run_update || fail "left4me-update.service failed: $(update_journal | tail -n 20)"
    gen_current
}
gens() { gen_ids | tr '\n' ' '; }

# Start from one generation: the current one (earlier scenarios made more).
"$HELPER" generation gc --keep 1 || fail "generation gc --keep 1 failed"
g1=$(gen_current)
[ "$(gens)" = "$g1 " ] || fail "gc --keep 1 with nothing mounted left $(gens), expected only the current $g1"
start_instance gk
[ "$(status_field gk generation)" = "$g1" ] || fail "gk not on $g1"

g2=$(update_to_next)
[ "$(gens)" = "$g1 $g2 " ] || fail "after the 1st update: $(gens), expected $g1 $g2"
g3=$(update_to_next)
# g1 is beyond the newest two but gk runs on it.
[ "$(gens)" = "$g1 $g2 $g3 " ] || fail "after the 2nd update: $(gens), expected $g1 (in use) $g2 $g3"
g4=$(update_to_next)
[ "$(gens)" = "$g1 $g3 $g4 " ] || fail "after the 3rd update: $(gens), expected $g1 (in use) $g3 $g4 ($g2 unused, beyond the newest two)"
[ "$(status_field gk generation)" = "$g1" ] && [ -x "$(merged gk)/srcds_run" ] || fail "gk lost its generation $g1"
expect_a2s 27048 "gc k"
note "KEEP=2: $g2 collected, $g1 kept while gk runs on it"

# A gc while it is mounted keeps it; once stopped, the next gc removes it.
"$HELPER" generation gc || fail "generation gc failed"
[ "$(gens)" = "$g1 $g3 $g4 " ] || fail "gc with gk mounted: $(gens)"
stop_instance gk
"$HELPER" generation gc || fail "generation gc failed"
[ "$(gens)" = "$g3 $g4 " ] || fail "gc after gk stopped: $(gens), expected $g3 $g4"
"$HELPER" generation gc --keep 1 || fail "generation gc --keep 1 failed"
[ "$(gens)" = "$g4 " ] || fail "gc --keep 1: $(gens), expected the current $g4 only"
[ "$(gen_current)" = "$g4" ] || fail "current moved to $(gen_current)"
note "stopped: $g1 collected; --keep 1 leaves only the current $g4"
start_instance gk
[ "$(status_field gk generation)" = "$g4" ] || fail "gk not on $g4 after its restart"
stop_instance gk; remove_instance gk
