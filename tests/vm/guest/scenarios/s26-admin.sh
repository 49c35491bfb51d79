# 26. The admin command `left4me` (docs/admin.md), as root and as an admin in
#     the service group (through root's request server, like the web app):
#     create (refusing what the helper refuses, with its exit codes), list
#     (the table, and --json checked against systemctl and the health
#     check's record), start, console, reset (timed steps, the game's writes
#     gone), logs, stop, delete (refused while running); an account outside
#     the group cannot connect to the request socket (exit 18). Also the web
#     app's one-request reset: the marker instances/NAME/reset-at-start and
#     one `restart` request.
# budget: 300
install_standin
make_overlay base "left4dead2/cfg/server.cfg=hostname \"admin base\""
for n in adm1 adm2; do remove_instance "$n"; done
id ops >/dev/null 2>&1 || useradd -m -G left4me ops
id outsider >/dev/null 2>&1 || useradd -m outsider
as_ops() { runuser -u ops -- "$@"; }
L=/usr/sbin/left4me
# expect_code CODE CMD...: CMD fails with exactly CODE.
expect_code() {
    local want=$1 rc=0; shift
    "$@" >"$OUT/s26-last.out" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$OUT/s26-last.out")"
    note "'$*' refused with exit $rc: $(head -n1 "$OUT/s26-last.out")"
}
# jq_of JSON NAME FIELD: one field of one instance of `list --json`.
jq_of() { jq -r --arg n "$2" ".instances[] | select(.name == \$n) | .$3" <<<"$1"; }

# create: as root it writes as the service user; as ops, as ops with the
# group's access. The helper's own rules refuse, with the helper's codes.
$L create adm1 --port 27050 --args "+map c1m1_hotel -console" --set L4D2_HEALTH_GRACE_SEC=2 ||
    fail "left4me create adm1 failed"
[ "$(stat -c '%U:%G %a' "$STATE/instances/adm1/instance.env")" = "left4me:left4me 660" ] ||
    fail "instance.env of adm1 is $(stat -c '%U:%G %a' "$STATE/instances/adm1/instance.env")"
as_ops $L create adm2 --port 27051 --overlays base --args "+map c1m1_hotel -console" \
    --set L4D2_HEALTH_GRACE_SEC=2 || fail "ops: left4me create adm2 failed"
[ "$(stat -c '%U:%G %a' "$STATE/instances/adm2/instance.env")" = "ops:left4me 660" ] ||
    fail "instance.env of adm2 is $(stat -c '%U:%G %a' "$STATE/instances/adm2/instance.env")"
expect_code 15 $L create adm1 --port 27052
expect_code 10 $L create 'a/b' --port 27052
expect_code 11 $L create adm3 --port 70000
expect_code 11 $L create adm3 --port 27052 --set LD_PRELOAD=/tmp/x.so
expect_code 11 as_ops $L create adm3 --port 27052 --args '+exec "x y"'
expect_code 12 as_ops $L create adm3 --port 27052 --overlays missing
[ ! -e "$STATE/instances/adm3" ] || fail "a refused create left instances/adm3"

expect_code 18 runuser -u outsider -- $L start adm1
$L start adm1 | tee "$OUT/s26-start.out" || fail "left4me start adm1 failed"
grep -q 'adm1 answers on port 27050' "$OUT/s26-start.out" || fail "start did not wait for the answer"
as_ops $L start adm2 || fail "ops: left4me start adm2 failed"
a2s-query 127.0.0.1 27051 --timeout 30 >/dev/null || fail "adm2 does not answer"
# ops' start went to root's request server, which logs who asked.
journalctl --sync 2>/dev/null || true
journalctl --no-pager -o cat -u left4me-requests.service | grep -q "^done for uid $(id -u ops) pid [0-9]*: start adm2" ||
    fail "the request server did not log ops' start of adm2: $(journalctl --no-pager -o cat -u left4me-requests.service | tail -n 5)"

# list: both running once the health check has answered (grace 2 s).
deadline=$(( $(now_ms) + 60000 ))
until [ "$(as_ops $L list --json | jq -r '[.instances[] | select(.name | startswith("adm")) | .state] | join(" ")')" = "running running" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "list never showed adm1 and adm2 running: $(as_ops $L list)"
    sleep 0.5
done
as_ops $L list | tee "$OUT/s26-list.txt"
grep -Eq '^adm2 +running +27051/27151/27251 +[^ ]+ +0/[0-9]+ +c1m1_hotel +0 ' "$OUT/s26-list.txt" || fail "the table's adm2 line is wrong"
for who in root ops; do
    t_list=$(now_ms)
    if [ "$who" = root ]; then json=$($L list --json); else json=$(as_ops $L list --json); fi
    t_listed=$(now_ms)
    for n in adm1 adm2; do
        u=$(unit "$n")
        [ "$(jq_of "$json" "$n" active_state)" = "$(systemctl show -P ActiveState "$u")" ] || fail "$who: active_state of $n"
        [ "$(jq_of "$json" "$n" sub_state)" = "$(systemctl show -P SubState "$u")" ] || fail "$who: sub_state of $n"
        rec=/run/left4me-health/$n/status.json
        [ "$(jq_of "$json" "$n" map)" = "$(jq -r .last_answer.map "$rec")" ] || fail "$who: map of $n"
        [ "$(jq_of "$json" "$n" players)" = "$(jq -r .last_answer.players "$rec")" ] || fail "$who: players of $n"
        [ "$(jq_of "$json" "$n" generation)" = "$(jq -r .generation "$rec")" ] || fail "$who: generation of $n"
        [ "$(jq_of "$json" "$n" restarts_by_check)" = "$(jq -r '.restarts_ms | length' "$rec")" ] || fail "$who: restarts of $n"
        [ "$(jq_of "$json" "$n" generation)" = "$(gen_current)" ] || fail "$who: $n runs $(jq_of "$json" "$n" generation), current is $(gen_current)"
        up=$(jq_of "$json" "$n" uptime_s)
        # From the record's start, as of the list call (between t_list and
        # t_listed; the checks above take seconds each under TCG).
        started=$(jq -r .started_ms "$rec")
        lo=$(( (t_list - started) / 1000 )) hi=$(( (t_listed - started) / 1000 ))
        { [ "$up" -ge "$lo" ] && [ "$up" -le "$hi" ]; } ||
            fail "$who: uptime of $n is $up s, the record's start says $lo to $hi s at the list"
        { [[ $up =~ ^[0-9]+$ ]] && [ "$up" -lt 300 ]; } || fail "$who: uptime of $n is '$up'"
        [[ $(jq_of "$json" "$n" upper_bytes) =~ ^[0-9]+$ ]] || fail "$who: no upper size of $n"
    done
    { [ "$(jq_of "$json" adm1 port)" = 27050 ] && [ "$(jq_of "$json" adm2 port)" = 27051 ]; } || fail "$who: ports"
done
note "list --json agrees with systemctl and the health records, as root and as ops"

# console, as ops: the map changes over A2S.
as_ops $L console adm2 'changelevel c2m1_highway' || fail "ops: console failed"
deadline=$(( $(now_ms) + 20000 ))
until [ "$(a2s-query 127.0.0.1 27051 --map --timeout 5)" = c2m1_highway ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "changelevel through left4me console did not reach the game"
    sleep 0.2
done
expect_code 18 runuser -u outsider -- $L console adm2 'quit'

# reset, as ops: each step timed; what the game wrote is gone.
runuser -u left4me -- sh -c "echo played > $(merged adm2)/left4dead2/written.txt"
as_ops $L reset adm2 | tee "$OUT/s26-reset.out" || fail "ops: left4me reset adm2 failed"
for step in "stop left4me-server@adm2.service" "reset left4me-reset@adm2.service" "start left4me-server@adm2.service" "adm2 answers on port 27051" "reset cycle of adm2"; do
    grep -q "^$step: [0-9.]* s" "$OUT/s26-reset.out" || fail "reset did not print '$step: N s'"
done
[ ! -e "$(merged adm2)/left4dead2/written.txt" ] || fail "left4me reset left the game's file"

# The web app's one-request reset: the marker, then one `restart` request.
runuser -u left4me -- sh -c "echo played > $(merged adm1)/left4dead2/written.txt && : > $STATE/instances/adm1/reset-at-start"
request_ok "restart adm1"
a2s-query 127.0.0.1 27050 --timeout 30 >/dev/null || fail "adm1 does not answer after the marked restart"
[ ! -e "$(merged adm1)/left4dead2/written.txt" ] || fail "the marked restart kept the game's file"
[ ! -e "$STATE/instances/adm1/reset-at-start" ] || fail "the marker was not consumed"
note "marker + one restart: a fresh writable layer"

# logs: the instance's units, the helper's mount among them.
$L logs adm1 > "$OUT/s26-logs.txt" || fail "left4me logs failed"
{ grep -q 'left4me-overlay@adm1' "$OUT/s26-logs.txt" && grep -q 'left4me-server@adm1' "$OUT/s26-logs.txt"; } ||
    fail "left4me logs adm1 lacks the overlay's or the server's lines"

# delete: refused while running; as ops it leaves root's empty runtime dir.
expect_code 15 as_ops $L delete adm2 --yes
as_ops $L stop adm2 || fail "ops: stop failed"
wait_unmounted adm2 15
as_ops $L delete adm2 --yes || fail "ops: delete adm2 failed"
[ ! -e "$STATE/instances/adm2" ] || fail "delete left instances/adm2"
[ -z "$(ls -A "$STATE/runtime/adm2/upper")" ] || fail "ops' delete left the game's files"
$L stop adm1 || fail "stop adm1 failed"
wait_unmounted adm1 15
# Deep trees, in what the game wrote and in the user's config dir: delete
# goes through the discard walk, one directory open at a time (the
# nineteenth review: remove_dir_all failed with EMFILE past about 1,020
# levels), here with 256 descriptors for 3,000 levels.
deep_chain='chdir $ARGV[0] or die "$!"; for (1..3000) { mkdir "d" or die "$!"; chdir "d" or die "$!" }'
perl -e "$deep_chain" "$STATE/runtime/adm1/upper" || fail "cannot build a deep chain in adm1's upper"
runuser -u left4me -- perl -e "$deep_chain" "$STATE/instances/adm1" || fail "cannot build a deep chain in instances/adm1"
(ulimit -n 256 && $L delete adm1 --yes) || fail "delete adm1 (3,000 levels deep, 256 fds) failed"
$L delete adm2 --yes || fail "root's delete of what ops left failed"
for n in adm1 adm2; do
    { [ ! -e "$STATE/instances/$n" ] && [ ! -e "$STATE/runtime/$n" ]; } || fail "delete left files of $n"
done
[ -z "$($L list --json | jq -r '.instances[] | select(.name | startswith("adm")) | .name')" ] || fail "list still shows deleted instances"
note "create/list/start/console/reset/logs/stop/delete as root and as a member of the group; delete of trees 3,000 levels deep with 256 fds"
