# Benchmark figures (printed, not asserted beyond "the cycle worked"), each
# new-design figure beside a baseline measured in the same boot:
# - stop-to-unmounted, 20 cycles each, alternating: the shipped units driven
#   as the web app does (left4me, a request to root's request server), the
#   same as root, and the
#   pre-split unit (tests/vm/guest/baseline-seed-design@.service, as root);
# - the reset cycle (stop, reset, start, first A2S answer), 10 rounds of
#   five ways alternating: ours as the web app in one request (marker +
#   restart request), the same with the health check masked, ours in three
#   requests (stop, reset, start), and the pre-split unit both as the seed's web
#   app ran it (stop and start through polkit as the service user, the upper
#   layer deleted by that user between them) and driven as root (the
#   helper's reset between root's stop and start), with where each way's
#   time goes;
# - `left4me list` over 32 running instances (must stay under 0.5 s);
# - 32 instances started together until all answer A2S, then stopped together
#   until all are unmounted (as root, see below).
# budget: 3600
install_standin
make_overlay base "left4dead2/cfg/server.cfg=hostname \"bench base\""
remove_instance bench
make_instance bench 27040 "base" "bench"
# The instance dir as the web app makes it: the service user's, so it can
# ask for the one-request reset (instances/bench/reset-at-start).
chown left4me:left4me "$STATE/instances/bench"
m=$(merged bench)
as_user() { runuser -u left4me -- "$@"; }
# A request whose answer only matters as success (inside the timings' $(...)).
quiet_request() { request "$@" >/dev/null; }
# The web app as what it is, one running process of the service user,
# started here before any timing (a process started per cycle would put its
# own start, an interpreter's, into the cycle: lib.sh's raw client starts
# python3 per call). A python3 process that does what each command line it
# reads asks and answers one line. Ours: "touch PATH" creates PATH, "send
# LINE" is one request on root's request socket, answered with the
# server's line. The seed's: "seed UNIT UPPER" is its web app's cycle,
# `systemctl stop UNIT` (through polkit), the delete of UPPER's contents
# (`find -delete`, as its rm), `systemctl start UNIT`, each a process as
# the seed's web app ran them, answered "STOPPED_US DELETED_US ok" (the
# stamps for its phases) or what failed.
WEBAPP_PY='
import socket, subprocess, sys, time
path = sys.argv[1]
def run(*argv):
    return subprocess.run(argv, stdout=subprocess.DEVNULL).returncode == 0
def send(line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        answer = s.makefile("rb").readline().decode("utf-8", "replace").rstrip("\n")
        return answer or "client: no answer (connection closed)"
    except OSError as e:
        return "client: %s" % e
    finally:
        s.close()
while True:
    command = sys.stdin.readline()
    if not command:
        break
    verb, _, arg = command.rstrip("\n").partition(" ")
    if verb == "touch":
        try:
            open(arg, "w").close()
            answer = "ok"
        except OSError as e:
            answer = "webapp: %s" % e
    elif verb == "send":
        answer = send(arg)
    elif verb == "seed":
        unit, _, upper = arg.partition(" ")
        if not run("systemctl", "stop", unit):
            answer = "stop failed"
        else:
            stopped = time.time_ns() // 1000
            if not run("find", upper, "-mindepth", "1", "-delete"):
                answer = "delete failed"
            else:
                deleted = time.time_ns() // 1000
                if not run("systemctl", "start", unit):
                    answer = "start failed"
                else:
                    answer = "%d %d ok" % (stopped, deleted)
    else:
        answer = "webapp: unknown command %r" % verb
    print(answer, flush=True)
'
coproc WEBAPP { exec runuser -u left4me -- python3 -I -S -c "$WEBAPP_PY" "$REQUESTS_SOCK"; }
# webapp_say COMMAND: the web app's answer to COMMAND.
webapp_say() {
    local answer
    printf '%s\n' "$1" >&"${WEBAPP[1]}"
    IFS= read -r answer <&"${WEBAPP[0]}" || fail "the web app process ended"
    echo "$answer"
}
# webapp COMMAND...: each command to the running web app, failing unless
# every answer is ok.
webapp() {
    local command answer
    for command in "$@"; do
        answer=$(webapp_say "$command")
        [ "$answer" = ok ] || { echo "web app: $command: $answer" >&2; return 1; }
    done
}
baseline=baseline-seed-design@bench.service
cp "$SHARE/guest/baseline-seed-design@.service" /run/systemd/system/
systemctl daemon-reload

# Median and p95 (nearest rank) of integers in ms, one per line on stdin.
stats() {
    local -a v
    mapfile -t v < <(sort -n)
    local n=${#v[@]}
    local p95=$(( (95 * n + 99) / 100 - 1 ))
    echo "median $(( v[(n - 1) / 2] )) ms, p95 ${v[p95]} ms, min ${v[0]} ms, max ${v[n - 1]} ms (n=$n)"
}
median() { local -a v; mapfile -t v < <(sort -n); echo "${v[(${#v[@]} - 1) / 2]}"; }
# ratio A B: A/B with two decimals
ratio() { echo "$1 $2" | awk '{ printf "%.2f", $1 / $2 }'; }
# paired_ratio "A..." "B...": the median of A[i]/B[i]. The designs alternate
# cycle by cycle, so each pair ran under the same host load; under emulation
# on a busy host the load drifts more between cycles than the designs
# differ, and the pairs cancel that drift where the medians of each do not.
paired_ratio() {
    local -a a=($1) b=($2) r
    local i
    for i in "${!a[@]}"; do r+=("$(echo "${a[i]} ${b[i]}" | awk '{ printf "%.4f", $1 / $2 }')"); done
    printf '%s\n' "${r[@]}" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'
}

# stop_to_unmounted "CMD..." UNIT: starts UNIT, waits for A2S, then times
# CMD (a --no-block stop) until merged/ is gone from PID 1's mount table.
stop_to_unmounted() {
    local u=$1; shift
    systemctl start "$u" || fail "start $u failed"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "$u: no A2S answer"
    local t0=${EPOCHREALTIME/./}
    "$@"
    # Tight pure-bash poll of PID 1's mount table: no fork per iteration.
    while mounted_at "$m"; do
        [ $(( ${EPOCHREALTIME/./} - t0 )) -lt 30000000 ] || fail "$u: still mounted after 30 s"
    done
    echo $(( (${EPOCHREALTIME/./} - t0) / 1000 ))
    while [ "$(systemctl show -P ActiveState "$u")" != inactive ]; do sleep 0.1; done
}

# The baseline has no health check, which the split units start with every
# server (issue 14): "root, no health" masks it for its cycles, so the
# boundary split's own cost shows apart from the health check's.
no_health() {
    systemctl mask --runtime --quiet left4me-health@bench.service
    stop_to_unmounted "$@"
    systemctl unmask --runtime --quiet left4me-health@bench.service
}
web=() root=() bare=() seed=()
for i in $(seq 20); do
    web+=("$(stop_to_unmounted "$(unit bench)" quiet_request "stop bench no-block")")
    root+=("$(stop_to_unmounted "$(unit bench)" systemctl stop --no-block "$(unit bench)")")
    bare+=("$(no_health "$(unit bench)" systemctl stop --no-block "$(unit bench)")")
    seed+=("$(stop_to_unmounted "$baseline" systemctl stop --no-block "$baseline")")
done

# A failure inside $(...) ends only that subshell; make it end the bench.
for v in "${web[@]}" "${root[@]}" "${bare[@]}" "${seed[@]}"; do
    [[ $v =~ ^[0-9]+$ ]] || fail "a stop-to-unmounted cycle failed (got '$v')"
done
[ ${#web[@]} -eq 20 ] && [ ${#root[@]} -eq 20 ] && [ ${#bare[@]} -eq 20 ] && [ ${#seed[@]} -eq 20 ] || fail "stop-to-unmounted: cycles missing"

# ts_us UNIT PROPERTY: a timestamp property of UNIT in epoch microseconds.
ts_us() {
    local v
    v=$(systemctl show --timestamp=us+utc -P "$2" "$1")
    [ -n "$v" ] || { echo 0; return; }
    date -d "$v" +%s%6N
}
ms_between() { echo $(( ($2 - $1) / 1000 )); }

# The request's share: a start of a unit that is already active is a no-op
# job, so a `start bench` request as the service user (the raw client's
# start, the server's systemctl) and root's own systemctl differ by the
# request's path only.
request_ok "start bench"
pk_user=() pk_app=() pk_root=()
for i in $(seq 10); do
    t0=${EPOCHREALTIME/./}; quiet_request "start bench"; pk_user+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    t0=${EPOCHREALTIME/./}; webapp "send start bench"; pk_app+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    t0=${EPOCHREALTIME/./}; systemctl start "$(unit bench)"; pk_root+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
done
systemctl stop "$(unit bench)"; wait_unmounted bench 30

# The reset cycle (stop, reset, start, first A2S answer), each way's cycle
# beside the others' under the same load, in this order every round:
# - ours, one request (the shipped design, as the web app): the service
#   user creates instances/bench/reset-at-start and sends one `restart
#   bench` request to root's request server;
#   the overlay unit's umount and mount run in that transaction and the
#   mount starts from an empty writable layer;
# - the same with the health check masked (by root, outside the timing),
#   to show what the check's stop and start cost the cycle;
# - ours in three requests: `stop bench`, `reset bench` (root's `systemctl
#   start --wait left4me-reset@bench`), `start bench`, one client sending
#   them one after the other (what `left4me reset` does);
# - the seed as its web app ran it (the like-for-like baseline): the
#   pre-split unit stopped and started by the service user through polkit
#   (the bench-only rule below grants what the seed's rule granted its
#   unit), and the upper layer deleted in between by the service user
#   itself, as the seed's web app did with rm. That works in this layout:
#   upper/ is the service user's (runtime/bench, root's 0750, lets its group
#   through), and so is everything in it, since the lower layers are
#   idmapped to the service user and copy-ups take that owner; the bench
#   checks it (no entry of upper/ may be another account's) and fails if a
#   delete is refused. upper/ itself and work/ (root's) stay, as the seed's
#   rm of the layer's contents left them;
# - the seed driven as root (no polkit, no request; the helper's reset, which
#   renames the layer aside and deletes it in the background, in between).
# Each web-app cycle is asked of its web app's running process (above);
# every cycle starts from a running server whose game
# wrote a file, and must end with the file gone. Where the time goes, from
# systemd's timestamps, the same three phases for every way: request to
# unmounted (ours: the request; the seed: polkit; then the health check's
# stop, the game's SIGINT exit, the umount); unmounted to the game's exec (ours: the job switch and the mount
# with its reset; the seed: the discard, the start request with its polkit
# check, the mount in ExecStartPre=); the exec to the first A2S answer (the
# sandbox, the game's start; ours also starts the health check beside it).
# Ours also splits its middle phase: the mount with the reset, and the
# mount to the game's exec (the server's start job).
rule=/etc/polkit-1/rules.d/left4me-bench-baseline.rules
# polkitd reads /etc/polkit-1/rules.d on both releases (bookworm's 122 that
# and /usr/share/polkit-1/rules.d; trixie's 126 also /run/polkit-1/rules.d
# and /usr/local/share/polkit-1/rules.d: the lists compiled into the two
# images' polkitd) and reloads on a change in any. The rule is removed
# after the reset cycles (and by the trap if the bench fails before).
trap 'rm -f "$rule"' EXIT
cat > "$rule" <<'RULE'
// Bench only (tests/vm/guest/scenarios/bench.sh): the seed's grant for the
// pre-split unit, so its web-app cycle can be measured through polkit.
polkit.addRule(function (action, subject) {
    if (action.id === "org.freedesktop.systemd1.manage-units" && subject.user === "left4me" &&
        /^baseline-seed-design@[A-Za-z0-9_-]+\.service$/.test(action.lookup("unit") || "") &&
        ["start", "stop", "restart"].indexOf(action.lookup("verb")) >= 0) {
        return polkit.Result.YES;
    }
    return polkit.Result.NOT_HANDLED;
});
RULE
chmod 0644 "$rule"
# A stop of the inactive unit is a no-op job, but polkit is asked all the
# same: it succeeds once polkitd has loaded the rule.
for i in $(seq 50); do
    as_user systemctl stop "$baseline" 2>/dev/null && break
    [ "$i" -lt 50 ] || fail "polkitd did not load $rule within 10 s"
    sleep 0.2
done
pk_seed=()
systemctl start "$baseline" || fail "start of the baseline for the polkit figure failed"
for i in $(seq 10); do
    t0=${EPOCHREALTIME/./}; as_user systemctl start "$baseline"; pk_seed+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
done
systemctl stop "$baseline"

upper=$STATE/runtime/bench/upper
marker=$STATE/instances/bench/reset-at-start
# running UNIT: starts UNIT (as root: not part of any cycle), waits for its
# first answer, and lets the game write a file the reset must discard.
running() {
    systemctl reset-failed "$1" 2>/dev/null || true
    systemctl start "$1" || fail "$1: start before the cycle failed"
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "$1: not answering before the cycle"
    as_user sh -c "echo played > $m/left4dead2/bench-written.txt"
}
# stopped UNIT: stops it (as root, outside the timing) until unmounted.
stopped() { systemctl stop "$1"; wait_unmounted bench 30; }
# answered WHAT T0: waits for the first answer after the cycle, checks the
# reset, prints "TOTAL_MS T1_US".
answered() {
    a2s-query 127.0.0.1 27040 --timeout 30 >/dev/null || fail "$1: no A2S answer after the reset"
    local t1=${EPOCHREALTIME/./}
    [ ! -e "$m/left4dead2/bench-written.txt" ] || fail "$1: the reset kept the game's file"
    echo "$(( (t1 - $2) / 1000 )) $t1"
}
# ours_one [masked]: the one-request cycle; prints "TOTAL UNMOUNTED TO_EXEC
# ANSWER MOUNT JOB HEALTH_EXEC HEALTH_UP": the last two are the health
# check's start beside the game's (-1 with the check masked): from its fork
# to its exec (the sandbox set-up, Type=exec makes the unit active then),
# and from its exec to its "started" log line (its record and its first
# metrics write, which asks systemctl for the server's figures).
ours_one() {
    running "$(unit bench)"
    local t0=${EPOCHREALTIME/./} total t1 r
    webapp "touch $marker" "send restart bench" || fail "one request: the restart was refused"
    r=$(answered "one request" "$t0") || exit 1
    read -r total t1 <<< "$r"
    [ ! -e "$marker" ] || fail "one request: the marker was not consumed"
    local umounted mount0 mount1 game0
    umounted=$(ts_us "$(overlay_unit bench)" InactiveEnterTimestamp)
    mount0=$(ts_us "$(overlay_unit bench)" ExecMainStartTimestamp)
    mount1=$(ts_us "$(overlay_unit bench)" ExecMainExitTimestamp)
    game0=$(ts_us "$(unit bench)" ExecMainStartTimestamp)
    local health="-1 -1" h0 h1 h2
    if [ "${1:-}" != masked ]; then
        h0=$(ts_us left4me-health@bench.service ExecMainStartTimestamp)
        h1=$(ts_us left4me-health@bench.service ActiveEnterTimestamp)
        h2=$(journalctl -u left4me-health@bench.service -o short-unix --no-pager --since "@$((t0 / 1000000))" |
            grep 'health check of bench started' | tail -n1 | cut -d' ' -f1 | tr -d .)
        [ -n "$h2" ] || fail "one request: the health check did not log its start"
        health="$(ms_between "$h0" "$h1") $(ms_between "$h1" "$h2")"
    fi
    stopped "$(unit bench)"
    echo "$total $(ms_between "$t0" "$umounted") $(ms_between "$umounted" "$game0") $(ms_between "$game0" "$t1") $(ms_between "$mount0" "$mount1") $(ms_between "$mount1" "$game0") $health"
}
ours_one_no_health() {
    systemctl mask --runtime --quiet left4me-health@bench.service
    ours_one masked
    systemctl unmask --runtime --quiet left4me-health@bench.service
}
ours_three() {
    running "$(unit bench)"
    local t0=${EPOCHREALTIME/./} total t1 r
    webapp "send stop bench" "send reset bench" "send start bench" || fail "three requests: a request failed"
    r=$(answered "three requests" "$t0") || exit 1
    read -r total t1 <<< "$r"
    stopped "$(unit bench)"
    echo "$total"
}
# seed_phases T0 STOPPED DISCARDED T1: the pre-split unit's phases, as
# "UNMOUNTED TO_EXEC ANSWER DISCARD". Its ExecStopPost= umount is done
# when its stop returns (STOPPED, taken by the one asking); PID 1 unloads
# the inactive unit, so its own stop timestamps are gone by the start.
seed_phases() {
    local game0
    game0=$(ts_us "$baseline" ExecMainStartTimestamp)
    echo "$(ms_between "$1" "$2") $(ms_between "$2" "$game0") $(ms_between "$game0" "$4") $(ms_between "$2" "$3")"
}
seed_web() {
    running "$baseline"
    local foreign
    foreign=$(find "$upper" -mindepth 1 ! -user left4me -printf '%P ' | head -c 300)
    [ -z "$foreign" ] || fail "seed as web app: upper/ holds entries the service user does not own: $foreign"
    local t0=${EPOCHREALTIME/./} total t1 r s1 s2 status
    read -r s1 s2 status <<< "$(webapp_say "seed $baseline $upper")"
    [ "$status" = ok ] || fail "seed as web app: $s1 $s2 $status"
    r=$(answered "seed as web app" "$t0") || exit 1
    read -r total t1 <<< "$r"
    local phases
    phases=$(seed_phases "$t0" "$s1" "$s2" "$t1")
    stopped "$baseline"
    echo "$total $phases"
}
seed_root() {
    running "$baseline"
    local t0=${EPOCHREALTIME/./} total t1 r s1 s2
    systemctl stop "$baseline"
    s1=${EPOCHREALTIME/./}
    "$HELPER" reset bench >/dev/null || fail "seed as root: reset failed"
    s2=${EPOCHREALTIME/./}
    systemctl start "$baseline"
    r=$(answered "seed as root" "$t0") || exit 1
    read -r total t1 <<< "$r"
    local phases
    phases=$(seed_phases "$t0" "$s1" "$s2" "$t1")
    stopped "$baseline"
    echo "$total $phases"
}
# A failure inside $(...) ends only that subshell; make it end the bench.
# numbers WHAT "VALUES" COUNT: VALUES must be COUNT integers.
numbers() {
    local v
    # shellcheck disable=SC2086 # $2 is a list of numbers, split on purpose
    for v in $2; do [[ $v =~ ^-?[0-9]+$ ]] || fail "reset cycle, $1: failed (got '$2')"; done
    [ "$(wc -w <<< "$2")" -eq "$3" ] || fail "reset cycle, $1: failed (got '$2')"
}
one=() one_a=() one_b=() one_c=() one_mount=() one_job=() one_hexec=() one_hup=()
bare1=() bare1_a=() bare1_b=() bare1_c=() three=()
sweb=() sweb_a=() sweb_b=() sweb_c=() sweb_d=() sroot=() sroot_a=() sroot_b=() sroot_c=() sroot_d=()
for i in $(seq 10); do
    r=$(ours_one); numbers "ours, one request, round $i" "$r" 8
    read -r t a b c mnt job hx hu <<< "$r"
    one+=("$t") one_a+=("$a") one_b+=("$b") one_c+=("$c") one_mount+=("$mnt") one_job+=("$job")
    one_hexec+=("$hx") one_hup+=("$hu")
    r=$(ours_one_no_health); numbers "ours, health masked, round $i" "$r" 8
    read -r t a b c _ _ _ _ <<< "$r"
    bare1+=("$t") bare1_a+=("$a") bare1_b+=("$b") bare1_c+=("$c")
    r=$(ours_three); numbers "ours, three requests, round $i" "$r" 1
    three+=("$r")
    r=$(seed_web); numbers "seed as web app, round $i" "$r" 5
    read -r t a b c d <<< "$r"
    sweb+=("$t") sweb_a+=("$a") sweb_b+=("$b") sweb_c+=("$c") sweb_d+=("$d")
    r=$(seed_root); numbers "seed as root, round $i" "$r" 5
    read -r t a b c d <<< "$r"
    sroot+=("$t") sroot_a+=("$a") sroot_b+=("$b") sroot_c+=("$c") sroot_d+=("$d")
done
rm -f "$rule"
# The web app's process ends with its input.
eval "exec ${WEBAPP[1]}>&-"
wait "$WEBAPP_PID" || fail "the web app process failed"
remove_instance bench
rm -f /run/systemd/system/baseline-seed-design@.service
systemctl daemon-reload

mw=$(printf '%s\n' "${web[@]}" | median); mr=$(printf '%s\n' "${root[@]}" | median)
ms=$(printf '%s\n' "${seed[@]}" | median)
med() { printf '%s\n' "$@" | median; }
# phases NAME A[] B[] C[]: the medians of the three phases.
# shellcheck disable=SC2086 # $2-$4 are lists of numbers, split on purpose
phases() { echo "  $1: request to unmounted $(med $2) ms; unmounted to game exec $(med $3) ms; exec to first A2S answer $(med $4) ms"; }
{
    echo "stop-to-unmounted, web app (left4me, request): $(printf '%s\n' "${web[@]}" | stats)"
    echo "stop-to-unmounted, root:                      $(printf '%s\n' "${root[@]}" | stats)"
    echo "stop-to-unmounted, root, health check masked: $(printf '%s\n' "${bare[@]}" | stats)"
    echo "stop-to-unmounted, pre-split unit (baseline): $(printf '%s\n' "${seed[@]}" | stats)"
    echo "stop-to-unmounted ratio (median) web/baseline $(ratio "$mw" "$ms"), root/baseline $(ratio "$mr" "$ms")"
    echo "stop-to-unmounted ratio (median of paired cycles) web/baseline $(paired_ratio "${web[*]}" "${seed[*]}"), root/baseline $(paired_ratio "${root[*]}" "${seed[*]}"), root without health check/baseline $(paired_ratio "${bare[*]}" "${seed[*]}")"
    echo "reset cycle (stop, reset, start, first A2S answer), 10 rounds, the five ways alternating:"
    echo "  ours, web app, one request (marker + restart):   $(printf '%s\n' "${one[@]}" | stats)"
    echo "  ours, one request, health check masked:          $(printf '%s\n' "${bare1[@]}" | stats)"
    echo "  ours, web app, three requests (left4me-reset@):  $(printf '%s\n' "${three[@]}" | stats)"
    echo "  seed as its web app (polkit, rm of the upper):   $(printf '%s\n' "${sweb[@]}" | stats)"
    echo "  seed as root (helper reset, no polkit):          $(printf '%s\n' "${sroot[@]}" | stats)"
    echo "reset cycle ratios, median of paired cycles (goal <= 1.0, 0.5 ideal):"
    echo "  one request / seed as web app $(paired_ratio "${one[*]}" "${sweb[*]}") (medians $(ratio "$(med "${one[@]}")" "$(med "${sweb[@]}")")); one request / seed as root $(paired_ratio "${one[*]}" "${sroot[*]}") (medians $(ratio "$(med "${one[@]}")" "$(med "${sroot[@]}")"))"
    echo "  one request, health masked / seed as web app $(paired_ratio "${bare1[*]}" "${sweb[*]}"); three requests / seed as web app $(paired_ratio "${three[*]}" "${sweb[*]}"), / seed as root $(paired_ratio "${three[*]}" "${sroot[*]}")"
    echo "where it goes (medians):"
    phases "ours, one request" "${one_a[*]}" "${one_b[*]}" "${one_c[*]}"
    echo "    of which the mount with the reset $(med "${one_mount[@]}") ms, mount to game exec (the server's start job) $(med "${one_job[@]}") ms"
    echo "    beside the game's start, the health check's: fork to exec (its sandbox) $(med "${one_hexec[@]}") ms, exec to its start logged (record, first metrics write) $(med "${one_hup[@]}") ms"
    phases "ours, health masked" "${bare1_a[*]}" "${bare1_b[*]}" "${bare1_c[*]}"
    phases "seed as web app" "${sweb_a[*]}" "${sweb_b[*]}" "${sweb_c[*]}"
    echo "    (unmounted: its stop returned) of which the service user's delete of the upper's contents $(med "${sweb_d[@]}") ms"
    phases "seed as root" "${sroot_a[*]}" "${sroot_b[*]}" "${sroot_c[*]}"
    echo "    (unmounted: its stop returned) of which the helper's reset $(med "${sroot_d[@]}") ms"
    echo "  a no-op start: a request from the running web app $(med "${pk_app[@]}") ms, from a client started for it $(med "${pk_user[@]}") ms (its interpreter's start included) vs root's systemctl $(med "${pk_root[@]}") ms; the seed's unit as the service user through polkit (bench rule) $(med "${pk_seed[@]}") ms (medians of 10)"
    echo "raw reset cycle ms: one request ${one[*]}; health masked ${bare1[*]}; three requests ${three[*]}; seed as web app ${sweb[*]}; seed as root ${sroot[*]}"
    echo "raw stop-to-unmounted ms: web ${web[*]}; root ${root[*]}; root, health masked ${bare[*]}; baseline ${seed[*]}"
} | tee "$OUT/bench.txt"

# 32 instances at once: one `systemctl --no-block` call per unit, all in
# parallel, then the same for the stop. As root: the request server serves
# 16 requests at once and answers the 17th `busy` (src/requests.rs), and the
# figure is the units', not the requests'.
units=()
for i in $(seq 32); do
    remove_instance "many$i"
    make_instance "many$i" $((27200 + i)) "base"
    units+=("$(unit "many$i")")
done
t0=${EPOCHREALTIME/./}
pids=()
for u in "${units[@]}"; do systemctl start --no-block "$u" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a start request of the 32 was refused"; done
for i in $(seq 32); do
    a2s-query 127.0.0.1 $((27200 + i)) --timeout 300 >/dev/null || fail "many$i does not answer within 300 s of the start request"
done
t_up=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
# `left4me list` over the 32 running instances: one systemctl call for all.
list_ms=()
for i in $(seq 5); do
    t0=${EPOCHREALTIME/./}
    n=$(left4me list | grep -c '^many[0-9]* ') || fail "left4me list failed"
    list_ms+=($(( (${EPOCHREALTIME/./} - t0) / 1000 )))
    [ "$n" = 32 ] || fail "left4me list shows $n of the 32 instances"
done
left4me list --json | grep -q '"name": "many32"' || fail "left4me list --json lacks many32"
t_list=$(printf '%s\n' "${list_ms[@]}" | median)
echo "left4me list, 32 running instances: $(printf '%s\n' "${list_ms[@]}" | stats)" | tee -a "$OUT/bench.txt"
[ "$t_list" -lt 500 ] || fail "left4me list with 32 instances took $t_list ms (median), over 0.5 s"
t0=${EPOCHREALTIME/./}
pids=()
for u in "${units[@]}"; do systemctl stop --no-block "$u" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a stop request of the 32 was refused"; done
for i in $(seq 32); do
    while mounted_at "$(merged "many$i")"; do
        [ $(( ${EPOCHREALTIME/./} - t0 )) -lt 120000000 ] || fail "many$i still mounted 120 s after the stop"
    done
done
t_down=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
for i in $(seq 32); do remove_instance "many$i"; done
echo "32 instances: started together until all answer A2S $t_up ms; stopped together until all unmounted $t_down ms" |
    tee -a "$OUT/bench.txt"

# Generations (docs/updates.md): what a generation that changes one file of
# a 1 GiB tree costs on disk under the default copy mode (auto: hard links on
# this ext4; reflinks need btrfs or xfs, whose tools the image lacks), and
# how long preparing plus committing it takes beside a plain `cp -a` of the
# same tree. The tree is the stand-in plus 256 files of 4 MiB; it is built
# on a tmpfs and imported, so the disk holds it once.
src=/run/left4me-bench-tree
mkdir -p "$src"; mount -t tmpfs -o size=1100M bench-tree "$src"
cp -R "$SHARE/standin/installation/." "$src/"
mkdir -p "$src/left4dead2/bench"
head -c 4M /dev/urandom > "$src/left4dead2/bench/pak000.vpk"
for i in $(seq 1 255); do cp "$src/left4dead2/bench/pak000.vpk" "$src/left4dead2/bench/pak$(printf %03d "$i").vpk"; done
sed -i 's/"buildid"\t\t"[0-9]*"/"buildid"\t\t"5000"/' "$src/steamapps/appmanifest_222860.acf"
"$HELPER" generation import "$src" >/dev/null || fail "bench: import of the 1 GiB tree failed"
umount "$src"; rmdir "$src"
base=$(gen_dir)
tree_kib=$(du -sk "$base" | cut -f1)
sync
t0=${EPOCHREALTIME/./}
cp -a "$base" /var/lib/left4me-bench-copy
sync
t_cp=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
rm -rf /var/lib/left4me-bench-copy
sync
df0=$(df -k --output=used "$GENS" | tail -n1)
t0=${EPOCHREALTIME/./}
"$HELPER" generation prepare --owner left4me-update >/dev/null || fail "bench: prepare failed"
t_prep=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
# What steamcmd does to one changed file: a new file renamed over the old.
runuser -u left4me-update -- sh -c "head -c 4M /dev/urandom > $GENS/.next/left4dead2/bench/pak007.vpk.tmp &&
    mv $GENS/.next/left4dead2/bench/pak007.vpk.tmp $GENS/.next/left4dead2/bench/pak007.vpk &&
    sed 's/\"5000\"/\"5001\"/' $GENS/.next/steamapps/appmanifest_222860.acf > $GENS/.next/steamapps/m.tmp &&
    mv $GENS/.next/steamapps/m.tmp $GENS/.next/steamapps/appmanifest_222860.acf" || fail "bench: the change as the update user failed"
t0=${EPOCHREALTIME/./}
"$HELPER" generation commit --restart never >/dev/null || fail "bench: commit failed"
t_commit=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
sync
df1=$(df -k --output=used "$GENS" | tail -n1)
new=$(gen_dir)
[ "$new" != "$base" ] || fail "bench: no new generation"
added=$(du -sk "$base" "$new" | tail -n1 | cut -f1)
{
    echo "generation of a $((tree_kib / 1024)) MiB tree with one 4 MiB file changed ($(findmnt -n -o FSTYPE -T "$GENS"), auto = hard links):"
    echo "  disk: du of the new generation beyond the old ${added} KiB; df used +$((df1 - df0)) KiB"
    echo "  time: prepare ${t_prep} ms + commit ${t_commit} ms = $((t_prep + t_commit)) ms; cp -a of the same tree ${t_cp} ms; ratio $(ratio $((t_prep + t_commit)) "$t_cp")"
} | tee -a "$OUT/bench.txt"
"$HELPER" generation gc --keep 1 >/dev/null || fail "bench: gc failed"
