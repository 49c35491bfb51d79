# 45. Installing the game the ways today's steamcmd allows (docs/updates.md,
#     "Installing the game"), through the real unit, with the fake steamcmd
#     refusing an anonymous Linux install as Valve's does:
#     - a fresh host with an owning account from a systemd credential: the
#       first run fails on Steam Guard with a message naming the interactive
#       login; after that login (the documented systemd-run line, fed on
#       stdin) the unit installs from the cached session; the password is in
#       no /proc/*/cmdline during the run, not in the journal, and in no file
#       left4me or left4me-update can read; an expired session fails with its
#       message;
#     - a fresh host with the anonymous platform workaround: installs, and
#       the Windows-only files are pruned at commit;
#     - validate never runs on a hard-linked .next/, does in copy mode;
#     - left4me-verify.service: a file damaged in the current generation is
#       reported by name and the repaired tree committed (with host.env on
#       hard links); nothing damaged says so; Steam at a newer build is
#       refused (exit 15 through `left4me update --verify`), nothing switched;
#     - an exit-0 failure (partial install) fails, an exit-8 success commits.
# budget: 400
standard_overlays
install_fake_steamcmd
# The generations are set aside for the fresh hosts below and come back.
cleanup() {
    restore_host_env
    rm -f /run/systemd/system/left4me-update.service.d/steam-login.conf /etc/left4me/steam-login /etc/left4me-test/s45.release
    systemctl daemon-reload
    if [ -e "$GENS.s45" ]; then rm -rf "$GENS"; mv "$GENS.s45" "$GENS"; fi
}
trap cleanup EXIT
set_host_env LEFT4ME_UPDATE_RESTART=never
pw=Sekr1t-s45-pw
pwhash=$(printf '%s' "$pw" | sha256sum | cut -d' ' -f1)
code=G7K2Q

# The update user's home as the unit's StateDirectory= makes it at its first
# start (here no update may have run yet: s45 right after s01).
install -d -m 0700 -o left4me-update -g left4me-update /var/lib/left4me-update
# An anonymous Linux install is refused with exit 0, as the real one does.
printf 'force_install_dir "/tmp"\nlogin anonymous\napp_update 222860\nquit\n' > /tmp/s45.script
chmod 0644 /tmp/s45.script
fake_steamcmd_conf 100 ok
out=$(runuser -u left4me-update -- env HOME=/var/lib/left4me-update /usr/local/bin/fake-steamcmd +runscript /tmp/s45.script) ||
    fail "the fake failed an anonymous install with a non-zero exit: $out"
grep -qF "ERROR! Failed to install app '222860' (Invalid platform)" <<<"$out" || fail "no Invalid platform: $out"
rm -f /tmp/s45.script

# A fresh host: no generation at all (nothing may be mounted meanwhile).
findmnt -rn -t overlay -o TARGET | grep -q "^$STATE/" && fail "an overlay is mounted; s45 needs none: $(findmnt -rn -t overlay -o TARGET)"
mv "$GENS" "$GENS.s45"

# The account: root's 0600 file, loaded as the credential steam-login.
install -m 0600 /dev/null /etc/left4me/steam-login
printf 'op\n%s\n' "$pw" > /etc/left4me/steam-login
printf '[Service]\nLoadCredential=steam-login:/etc/left4me/steam-login\n' \
    > /run/systemd/system/left4me-update.service.d/steam-login.conf
systemctl daemon-reload
set_host_env LEFT4ME_UPDATE_RESTART=never LEFT4ME_STEAM_LOGIN=account
rm -f /var/lib/left4me-update/Steam/config/fake-session
fake_steamcmd_conf 200 ok account=op "password_sha256=$pwhash" "guard=$code"
if run_update 2>/dev/null; then fail "account: the first run passed Steam Guard without a code"; fi
grep -qF "systemd-run --pty" <<<"$(update_journal)" || fail "account: the Steam Guard failure does not name the interactive login: $(update_journal | tail -n 15)"
[ ! -e "$GENS/current" ] || fail "account: a failed first install made a generation"
note "account, first run: $(update_journal | grep -m1 -o 'Steam refused the login[^:]*')"

# The interactive first login, as docs/updates.md has it (--pipe for --pty).
printf '%s\n%s\n' "$pw" "$code" | systemd-run --pipe --wait --collect --quiet -p User=left4me-update \
    -p StateDirectory=left4me-update -E HOME=/var/lib/left4me-update /usr/local/bin/fake-steamcmd +login op +quit >/dev/null ||
    fail "the interactive login failed"
[ "$(stat -c %U /var/lib/left4me-update/Steam/config/fake-session)" = left4me-update ] || fail "no session cached in the update user's home"

# Now non-interactive; the password never on a command line.
fake_steamcmd_conf 200 ok account=op "password_sha256=$pwhash" "guard=$code" sleep=3
# The pattern from a root-only file: on grep's own command line it would
# be found in /proc.
pat=$(mktemp)
printf '%s\n' "$pw" > "$pat"
update_mark
systemctl start --no-block left4me-update.service
seen=0
deadline=$(( $(now_ms) + 120000 ))
# The start job of a oneshot lasts until the run ends.
while [ -n "$(systemctl list-jobs --no-legend left4me-update.service)" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "account: the update still runs after 120 s"
    hits=$(grep -alF -f "$pat" /proc/[0-9]*/cmdline 2>/dev/null || true)
    [ -z "$hits" ] || fail "the password is in $hits: $(tr '\0' ' ' < "${hits%%$'\n'*}")"
    if pgrep -u left4me-update -f fake-steamcmd >/dev/null; then seen=1; fi
    sleep 0.2
done
[ "$(systemctl show -P ActiveState left4me-update.service)" = inactive ] ||
    fail "account: the install failed: $(update_journal | tail -n 20)"
[ "$seen" = 1 ] || fail "never saw steamcmd run while scanning /proc"
rm -f "$pat"
journal=$(update_journal)
grep -qF "Logging in user 'op' [U:1:4242] to Steam Public...OK" <<<"$journal" || fail "account: no login without a Steam Guard code after the interactive one: $journal"
grep -qF 'login op "********"' <<<"$journal" || fail "account: the echoed login line is not masked: $journal"
g=$(gen_current)
[ -x "$GENS/$g/srcds_run" ] || fail "account: the fresh install has no srcds_run"
journalctl --no-pager -o verbose -u left4me-update.service | grep -qF "$pw" && fail "the password is in the journal"
for u in left4me left4me-update; do
    hits=$(runuser -u "$u" -- grep -rlsF "$pw" /etc /var /run /tmp /home /root /srv 2>/dev/null || true)
    [ -z "$hits" ] || fail "the password is in files $u can read: $hits"
done
note "account: fresh install $g from the cached session; the password in no cmdline, journal, or file left4me(-update) can read"

# An expired session: the unit fails and says what to run.
fake_steamcmd_conf 201 ok account=op "password_sha256=$pwhash" session=expired
printf 'op\n' > /etc/left4me/steam-login
if run_update 2>/dev/null; then fail "expired: the update succeeded"; fi
grep -qF "the cached session expired" <<<"$(update_journal)" || fail "expired: no message: $(update_journal | tail -n 15)"
grep -qF "systemd-run --pty --wait --collect -p User=left4me-update" <<<"$(update_journal)" || fail "expired: the message does not say what to run"
[ "$(gen_current)" = "$g" ] || fail "expired: current moved"
note "expired session: $(update_journal | grep -m1 -o 'Steam refused the login[^:]*')"

# A fresh host with the anonymous platform workaround (no credential).
rm -f /run/systemd/system/left4me-update.service.d/steam-login.conf
systemctl daemon-reload
rm -rf "$GENS"
set_host_env LEFT4ME_UPDATE_RESTART=never LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround
fake_steamcmd_conf 300 ok
run_update || fail "workaround: the fresh install failed: $(update_journal | tail -n 20)"
g=$(gen_current)
journal=$(update_journal)
[ "$(grep -c "^Success! App '222860' fully installed.$" <<<"$journal")" = 2 ] || fail "workaround: not two app_updates: $journal"
grep -qF "removed 3 Windows-only files" <<<"$journal" || fail "workaround: no pruning logged: $journal"
left=$(find "$GENS/$g" -iname '*.exe' -o -iname '*.dll')
[ -z "$left" ] || fail "workaround: Windows-only files in $g: $left"
cmp -s "$GENS/$g/.left4me-steamclient.so" /var/lib/left4me-update/Steam/linux32/steamclient.so ||
    fail "workaround: $g does not carry the steamclient.so of the steamcmd that built it"
note "workaround: fresh install $g, $(grep -o 'removed 3 Windows-only files' <<<"$journal")"

# Hard links: no validate. An update after a commit shares the files.
fake_steamcmd_conf 301 ok
run_update || fail "hard links: the update failed: $(update_journal | tail -n 20)"
journal=$(update_journal)
grep -qF "without validate: .next/ shares files" <<<"$journal" || fail "hard links: validate not skipped: $journal"
grep -qE "^app_update 222860 validate|validated [0-9]+ files" <<<"$journal" && fail "hard links: validate ran: $journal"
# Copy mode: validate runs.
set_host_env LEFT4ME_UPDATE_RESTART=never LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround LEFT4ME_UPDATE_COPY=copy
fake_steamcmd_conf 302 ok
run_update || fail "copy mode: the update failed: $(update_journal | tail -n 20)"
grep -qE "validated [0-9]+ files" <<<"$(update_journal)" || fail "copy mode: validate did not run: $(update_journal | tail -n 20)"
note "validate: skipped on hard links, run in copy mode"

# Verification (left4me-verify.service): host.env back to hard links, which
# the unit overrides with a full copy. A file of the current generation
# damaged on disk (root writes it): validate repairs the copy, commit names
# the file and commits the repaired tree; the damaged generation is untouched.
set_host_env LEFT4ME_UPDATE_RESTART=never LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround LEFT4ME_UPDATE_COPY=auto
g=$(gen_current)
printf 'damaged\n' > "$GENS/$g/left4dead2/gameinfo.txt"
fake_steamcmd_conf 302 ok
run_verify || fail "verify: the run failed: $(verify_journal | tail -n 20)"
journal=$(verify_journal)
grep -qF " 0 hard-linked, " <<<"$journal" || fail "verify: prepare hard-linked files under LEFT4ME_UPDATE_COPY=auto: $journal"
grep -qF "validate repaired left4dead2/gameinfo.txt in place" <<<"$journal" || fail "verify: the fake did not repair: $journal"
g2=$(gen_current)
[ "$g2" != "$g" ] || fail "verify: the repaired tree is not a generation"
grep -qF "verified: 1 files differed from generation $g (build 302), first: left4dead2/gameinfo.txt; committed the repaired tree as generation $g2;" <<<"$journal" ||
    fail "verify: no summary naming the file: $journal"
cmp -s "$GENS/$g2/left4dead2/gameinfo.txt" /usr/local/share/left4me-test/standin/left4dead2/gameinfo.txt || fail "verify: the new generation is not repaired"
[ "$(cat "$GENS/$g/left4dead2/gameinfo.txt")" = damaged ] || fail "verify: the damaged generation was written"
note "verify: $(grep -o 'verified: 1 files differed[^;]*' <<<"$journal")"
# Nothing differs now: said so, nothing switched. Meanwhile an update is
# started (by root: this scenario ran the update minutes ago, so the
# service user's `update` request would be refused for its 15-min
# spacing, s08's check): the update unit names the running
# verification (--sibling), so its prepare is refused by what systemd says,
# and its abort leaves the verification's tree alone.
release=/etc/left4me-test/s45.release
rm -f "$release"
fake_steamcmd_conf 302 ok "hold=$release"
systemctl reset-failed left4me-verify.service left4me-update.service 2>/dev/null || true
update_mark
systemctl start --no-block left4me-verify.service
t0=$(now_ms)
until [ -d "$GENS/.next" ] && [ "$(systemctl show -P ActiveState left4me-verify.service)" = activating ]; do
    [ $(( $(now_ms) - t0 )) -lt 30000 ] || fail "verify again: no .next/ of a running verification after 30 s"
    sleep 0.2
done
systemctl start --no-block left4me-update.service
while [ "$(systemctl show -P ActiveState left4me-update.service)" != failed ]; do
    [ "$(systemctl show -P ActiveState left4me-verify.service)" = activating ] ||
        fail "verify again: the verification ended before the update: $(update_journal | tail -n 20)"
    sleep 0.2
done
grep -qF "left4me-verify.service is activating: $GENS/.next is its tree" <<<"$(update_journal)" ||
    fail "verify again: the update was not refused for the verification: $(update_journal | tail -n 20)"
grep -qx "still-building" <<<"$(update_journal)" || fail "verify again: the update's abort did not leave the tree: $(update_journal | tail -n 20)"
touch "$release"
while [ "$(systemctl show -P ActiveState left4me-verify.service)" = activating ]; do
    [ $(( $(now_ms) - t0 )) -lt 90000 ] || fail "verify again: still running 90 s after its start"
    sleep 0.5
done
[ "$(systemctl show -P Result left4me-verify.service)" = success ] || fail "verify again: the run failed: $(verify_journal | tail -n 20)"
grep -qxF "verified: no file differs from generation $g2 (build 302); nothing switched" <<<"$(verify_journal)" ||
    fail "verify again: no 'no file differs': $(verify_journal | tail -n 20)"
[ "$(gen_current)" = "$g2" ] || fail "verify again: current moved"
note "verify again: nothing differs; an update asked for meanwhile was refused: $(grep -o 'left4me-verify.service is activating[^;]*' <<<"$(update_journal)" | head -n 1)"
systemctl reset-failed left4me-update.service
# Steam has a newer build: a verification is no update. Through the admin
# command, which reports the commit's exit status.
fake_steamcmd_conf 303 ok
before=$(gen_ids | paste -sd' ')
update_mark
rc=0; out=$(/usr/sbin/left4me update --verify 2>&1) || rc=$?
[ "$rc" = 15 ] || fail "verify, newer build: left4me update --verify exited $rc, not 15: $out"
grep -qF "not verified: Steam has build 303, generation $g2 is build 302" <<<"$(verify_journal)" ||
    fail "verify, newer build: no refusal: $(verify_journal | tail -n 20)"
[ "$(gen_current)" = "$g2" ] || fail "verify, newer build: current moved"
[ ! -e "$GENS/.next" ] || fail "verify, newer build: .next/ left"
[ "$(gen_ids | paste -sd' ')" = "$before" ] || fail "verify, newer build: generations $(gen_ids | paste -sd' '), were $before"
note "verify, newer build: refused (exit 15), nothing switched"

# Exit status is not the judge: 0 after a partial install fails; 8 after a
# full one commits.
g=$(gen_current)
fake_steamcmd_conf 303 partial
if run_update 2>/dev/null; then fail "partial: a half install with exit 0 committed"; fi
grep -qF "did not print 'Success! App '222860' fully installed.'" <<<"$(update_journal)" || fail "partial: no message: $(update_journal | tail -n 15)"
[ "$(gen_current)" = "$g" ] || fail "partial: current moved"
fake_steamcmd_conf 304 exit8
run_update || fail "exit8: a full install with exit 8 was refused: $(update_journal | tail -n 20)"
grep -qF "ended with exit status: 8" <<<"$(update_journal)" || fail "exit8: the exit status is not logged"
grep -q '"buildid"[[:space:]]*"304"' "$(gen_dir)/steamapps/appmanifest_222860.acf" || fail "exit8: not build 304"
note "exit 0 + half install: refused; exit 8 + success line + manifest: committed"

note "the generations set aside are back"
