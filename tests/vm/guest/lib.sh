# shellcheck shell=bash
# Shared helpers for the in-guest scenarios (sourced under bash -euo pipefail).
STATE=/var/lib/left4me
HELPER=/usr/libexec/left4me/left4me-overlay
SHARE=/mnt/share
OUT=${LEFT4ME_VM_OUT:-$SHARE/out}

fail() { echo "ASSERTION FAILED: $*" >&2; exit 1; }
note() { echo "-- $*"; }

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

unit() { echo "left4me-server@$1.service"; }
overlay_unit() { echo "left4me-overlay@$1.service"; }
reset_unit() { echo "left4me-reset@$1.service"; }

# Is anything mounted at DIR in PID 1's mount namespace? Pure bash (no fork),
# so the benchmark can poll it tightly.
mounted_at() {
    local _a _b _c _d mp _rest
    while read -r _a _b _c _d mp _rest; do
        [[ $mp == "$1" ]] && return 0
    done < /proc/1/mountinfo
    return 1
}
merged() { echo "$STATE/runtime/$1/merged"; }
is_mounted() { mounted_at "$(merged "$1")"; }

# PIDs whose mount namespace still has the instance's merged dir mounted.
ns_holders() {
    local path f pids=()
    path=$(merged "$1")
    for f in /proc/[0-9]*/mountinfo; do
        if grep -qF " $path " "$f" 2>/dev/null; then
            f=${f#/proc/}; pids+=("${f%/mountinfo}")
        fi
    done
    echo "${pids[*]}"
}

# make_overlay NAME FILE=CONTENT... (paths relative to the overlay root)
make_overlay() {
    local name=$1 kv path; shift
    mkdir -p "$STATE/overlays/$name"
    for kv in "$@"; do
        path=$STATE/overlays/$name/${kv%%=*}
        mkdir -p "$(dirname "$path")"
        printf '%s\n' "${kv#*=}" > "$path"
    done
}

# The two shared overlays the scenarios stack ("top base": top is higher).
standard_overlays() {
    make_overlay base "left4dead2/cfg/server.cfg=hostname \"from base\"" \
        "left4dead2/shadow.txt=base" "left4dead2/base-only.txt=base" "left4dead2/both.txt=base"
    make_overlay top "left4dead2/cfg/server.cfg=hostname \"from top\"" \
        "left4dead2/both.txt=top" "left4dead2/top-only.txt=top"
}

# make_instance NAME PORT "OVERLAYS" [HOSTNAME]: instance.env, and a
# per-instance layer setting the hostname when HOSTNAME is given.
make_instance() {
    local name=$1 port=$2 overlays=$3 host=${4:-}
    mkdir -p "$STATE/instances/$name"
    cat > "$STATE/instances/$name/instance.env" <<ENV
L4D2_PORT=$port
L4D2_ARGS="+map c1m1_hotel -console"
L4D2_OVERLAYS="$overlays"
ENV
    if [ -n "$host" ]; then
        mkdir -p "$STATE/instances/$name/layer/left4dead2/cfg"
        printf 'hostname "%s"\n' "$host" > "$STATE/instances/$name/layer/left4dead2/cfg/server.cfg"
    fi
}

# Drops an instance completely (units stopped, overlay reset, files gone).
remove_instance() {
    systemctl stop "$(unit "$1")" "$(overlay_unit "$1")" 2>/dev/null || true
    systemctl reset-failed "$(unit "$1")" "$(overlay_unit "$1")" "$(reset_unit "$1")" 2>/dev/null || true
    "$HELPER" umount "$1" >/dev/null 2>&1 || true
    rm -rf "$STATE/instances/$1" "$STATE/runtime/$1"
}

# The helper's exit code for NAME's last failed mount or reset, from its own
# record: PID 1 unloads the failed overlay and reset units
# (CollectMode=inactive-or-failed), their ExecMainStatus with them.
last_failure_code() { sed -n 's/.*"exit_code":\([0-9]*\).*/\1/p' "$STATE/runtime/$1/last-failure.json" 2>/dev/null; }
active_state() { systemctl show -P ActiveState "$(unit "$1")"; }

# Root's request server (src/requests.rs, left4me-requests.socket): the only
# way the service user and its group get a job of a left4me unit queued;
# PID 1 refuses them every job itself (no polkit grant).
# Where it listens, from the installed socket unit (its ListenStream=, the
# one definition); empty until the package is installed (s01 asks again).
requests_sock() { systemctl show -P Listen left4me-requests.socket 2>/dev/null | cut -d' ' -f1; }
REQUESTS_SOCK=$(requests_sock) || true
# The raw client, as the web app speaks the protocol: for each argument, one
# connection, the argument and a newline written, one answer line read and
# printed (a client-side failure as "client: ..."); exit 0 only if every
# answer was `ok`. REQUEST_SLOW=S writes the line a byte at a time, S
# seconds apart; REQUEST_TIMES=1 prints each answer's time (connect to
# answer) on stderr as "request-ms N". Python without site (-I -S): its
# start is most of a request's cost under TCG.
REQUEST_PY='
import os, socket, sys, time
slow = float(os.environ.get("REQUEST_SLOW") or 0)
status = 0
for line in sys.argv[2:]:
    data = line.encode() + b"\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t0 = time.monotonic()
    try:
        s.connect(sys.argv[1])
        if slow:
            for i in range(len(data)):
                if i:
                    time.sleep(slow)
                s.sendall(data[i:i + 1])
        else:
            s.sendall(data)
        answer = s.makefile("rb").readline().decode("utf-8", "replace").rstrip("\n")
        answer = answer or "client: no answer (connection closed)"
    except OSError as e:
        # A refused request may be answered and closed before all of it is
        # sent: what it was answered is still there to read.
        try:
            answer = s.makefile("rb").readline().decode("utf-8", "replace").rstrip("\n")
        except OSError:
            answer = ""
        answer = answer or "client: %s" % e
    finally:
        s.close()
    if os.environ.get("REQUEST_TIMES"):
        print("request-ms %d" % ((time.monotonic() - t0) * 1000), file=sys.stderr)
    print(answer, flush=True)
    if answer != "ok":
        status = 1
sys.exit(status)
'
# request LINE...: the lines, as the service user (AS=ACCOUNT for another),
# through the raw client; prints one answer line each.
request() {
    runuser -u "${AS:-left4me}" -- python3 -I -S -c "$REQUEST_PY" "${REQUESTS_SOCK:-$(requests_sock)}" "$@"
}
# request_ok LINE...: the same, failing the scenario unless each answer is ok.
request_ok() {
    local out
    out=$(request "$@") || fail "request '$*' as ${AS:-left4me}: $(tr '\n' ' ' <<<"$out")"
}
# PID 1's answer to a job asked of it directly by an account without a
# polkit grant (polkitd installed: "Interactive authentication required";
# without it, "Access denied").
denied() { grep -Eqi 'access denied|interactive authentication required|not authorized' <<<"$1"; }

# wait_state INSTANCE STATE TIMEOUT_S
wait_state() {
    local deadline=$(( $(now_ms) + $3 * 1000 ))
    while [ "$(active_state "$1")" != "$2" ]; do
        [ "$(now_ms)" -lt "$deadline" ] ||
            fail "$(unit "$1") not $2 after $3 s (is $(active_state "$1"))"
        sleep 0.2
    done
}

# expect_a2s PORT HOSTNAME [TIMEOUT_S]
expect_a2s() {
    local got
    got=$(a2s-query 127.0.0.1 "$1" --timeout "${3:-20}") ||
        fail "no A2S_INFO answer on port $1"
    [ "$got" = "$2" ] || fail "A2S hostname on port $1 is '$got', expected '$2'"
    note "A2S on port $1 answers '$got'"
}

start_instance() {
    systemctl start "$(unit "$1")" || fail "systemctl start $(unit "$1") failed"
    wait_state "$1" active 30
    is_mounted "$1" || fail "$1 active but $(merged "$1") is not mounted"
}

# A returned `systemctl stop` of the server does not mean unmounted: the
# umount is the overlay unit's stop job, which runs after the server's.
# wait_unmounted INSTANCE TIMEOUT_S
wait_unmounted() {
    local deadline=$(( $(now_ms) + $2 * 1000 ))
    while is_mounted "$1"; do
        [ "$(now_ms)" -lt "$deadline" ] || fail "$(merged "$1") still mounted $2 s after the stop"
        sleep 0.05
    done
}

stop_instance() {
    systemctl stop "$(unit "$1")" || fail "systemctl stop $(unit "$1") failed"
    wait_unmounted "$1" 15
}

# Journal lines of an instance's server unit, or of another unit (UNIT=...),
# since a cursor-ish timestamp.
unit_journal() { journalctl --no-pager -o cat -u "${UNIT:-$(unit "$1")}" ${2:+--since "$2"}; }

# The game's generations (docs/updates.md).
GENS=$STATE/installations
gen_current() { cat "$GENS/current"; }
gen_dir() { echo "$GENS/$(gen_current)"; }
# Committed generations, oldest first (ids sort by time; .next is not one).
gen_ids() { find "$GENS" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' | LC_ALL=C sort; }
# A string or boolean field of `status --json NAME` (one instance).
status_field() {
    "$HELPER" status --json "$1" | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}\$/\1/p" | head -n 1
}
# The generation a mounted instance runs, as the helper wrote it into the
# game's environment copy.
env_generation() { sed -n 's/^LEFT4ME_GENERATION=["]\{0,1\}\([^"]*\)["]\{0,1\}$/\1/p' "$STATE/runtime/.left4me/$1.env"; }
# A checksum of every file, link and mode in a tree (the order is fixed).
tree_sum() { (cd "$1" && find . -printf '%p %y %m %u:%g %l\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1; }

# Installs the stand-in game (build 1000) as the first generation, the way
# an admin imports a tree installed by hand (docs/updates.md). Importing the
# same build again changes nothing, so later phases may call it again.
install_standin() {
    "$HELPER" generation import "$SHARE/standin/installation" ||
        fail "generation import of the stand-in failed"
    [ -x "$(gen_dir)/srcds_run" ] || fail "no srcds_run in the current generation $(gen_dir)"
}

# The fake steamcmd (fake-steamcmd in this dir) as the update unit's
# steamcmd: installed root-owned, with a local root-owned copy of the
# stand-in tree for a fresh install. fake_steamcmd_conf BUILD [MODE]
# sets what the next run produces.
FAKE_CONF=/etc/left4me-test/fake-steamcmd.conf
install_fake_steamcmd() {
    install -D -m 0755 "$SHARE/guest/fake-steamcmd" /usr/local/bin/fake-steamcmd
    rm -rf /usr/local/share/left4me-test/standin
    mkdir -p /usr/local/share/left4me-test
    cp -R "$SHARE/standin/installation" /usr/local/share/left4me-test/standin
    chown -R root:root /usr/local/share/left4me-test
    # The anonymous workaround unless host.env says otherwise (host.env's
    # EnvironmentFile= beats Environment=): no credential to set up.
    local u
    for u in left4me-update left4me-verify; do
        mkdir -p "/run/systemd/system/$u.service.d"
        printf '[Service]\nEnvironment=LEFT4ME_STEAMCMD=/usr/local/bin/fake-steamcmd LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround\n' \
            > "/run/systemd/system/$u.service.d/fake-steamcmd.conf"
    done
    systemctl daemon-reload
}
# fake_steamcmd_conf BUILD [MODE [KEY=VALUE...]]
fake_steamcmd_conf() {
    mkdir -p "${FAKE_CONF%/*}"
    printf 'build=%s\nmode=%s\nsource=/usr/local/share/left4me-test/standin\n' "$1" "${2:-ok}" > "$FAKE_CONF"
    if [ $# -gt 2 ]; then printf '%s\n' "${@:3}" >> "$FAKE_CONF"; fi
}
# host.env settings for one scenario: set_host_env KEY=VALUE...; the
# package's file comes back with restore_host_env (trap it on EXIT).
set_host_env() {
    [ -e /etc/left4me/host.env.vmtest ] || cp -p /etc/left4me/host.env /etc/left4me/host.env.vmtest
    local kv
    for kv in "$@"; do
        sed -i "/^${kv%%=*}=/d" /etc/left4me/host.env
        echo "$kv" >> /etc/left4me/host.env
    done
}
restore_host_env() {
    if [ -e /etc/left4me/host.env.vmtest ]; then mv /etc/left4me/host.env.vmtest /etc/left4me/host.env; fi
}
# Marks the journal before a run of the update unit (run_update does it).
# Not the unit's InvocationID: systemd clears it once a oneshot finishes
# successfully.
update_mark() {
    journalctl --sync 2>/dev/null || true
    UPDATE_CURSOR=$(journalctl -n 1 -o cat --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
}
# run_oneshot UNIT: runs the update or verification unit to its end;
# succeeds only if it did.
run_oneshot() {
    systemctl reset-failed "$1" 2>/dev/null || true
    update_mark
    systemctl start "$1"
}
# journal_since_mark UNIT: everything UNIT logged since the mark: steamcmd,
# the `+` lines (all in the unit's cgroup) and systemd's messages about it.
journal_since_mark() {
    journalctl --sync 2>/dev/null || true
    journalctl --no-pager -o cat -u "$1" --after-cursor "$UPDATE_CURSOR"
}
run_update() { run_oneshot left4me-update.service; }
update_journal() { journal_since_mark left4me-update.service; }
run_verify() { run_oneshot left4me-verify.service; }
verify_journal() { journal_since_mark left4me-verify.service; }

# apt refuses to install from the 9p share ("Pathname to install is not
# absolute"), so install from a local copy.
local_deb() {
    local src
    src=$(ls "$SHARE"/left4me_*_amd64.deb)
    mkdir -p /var/tmp/left4me-vm
    cp "$src" /var/tmp/left4me-vm/
    echo "/var/tmp/left4me-vm/$(basename "$src")"
}

# The /run directories of the health checks and of steamcmd, each a capped
# tmpfs of its own (dist/run-left4me*.mount.in and the tmpfiles lines): DIR
# SIZE(findmnt's k) NR_INODES OWNER MODE MOUNT-MODE (the mount's mode=).
RUN_MOUNTS=("/run/left4me-health 16384k 4096 root:root 711 711"
            "/run/left4me-metrics 8192k 2048 root:left4me-health 775 755"
            "/run/left4me-steamcmd 24576k 64 root:root 711 711")

# check_run_mounts WHEN: each is exactly one tmpfs mount at its directory,
# made by its own mount unit (active), with the size, inode cap, options,
# owner and mode of dist/ and the tmpfiles line.
check_run_mounts() {
    local when=$1 spec dir size inodes owner mode mount_mode lines fstype source opts o
    for spec in "${RUN_MOUNTS[@]}"; do
        read -r dir size inodes owner mode mount_mode <<<"$spec"
        lines=$(findmnt -n -o FSTYPE,SOURCE,OPTIONS --mountpoint "$dir") ||
            fail "$when: $dir is not a mount point"
        [ "$(wc -l <<<"$lines")" = 1 ] || fail "$when: more than one mount at $dir: $lines"
        read -r fstype source opts <<<"$lines"
        [ "$fstype $source" = "tmpfs tmpfs" ] || fail "$when: $dir is '$fstype' from '$source', not a tmpfs"
        for o in nosuid nodev noexec "size=$size" "nr_inodes=$inodes" "mode=$mount_mode"; do
            [[ ,$opts, == *",$o,"* ]] || fail "$when: $dir lacks $o: $opts"
        done
        [ "$(systemctl is-active "$(systemd-escape --path --suffix=mount "$dir")")" = active ] ||
            fail "$when: $(systemd-escape --path --suffix=mount "$dir") is not active"
        # The mount's own mode= stays in its options; tmpfiles sets the
        # root's owner and mode after it.
        [ "$(stat -c '%U:%G %a' "$dir")" = "$owner $mode" ] ||
            fail "$when: $dir is $(stat -c '%U:%G %a' "$dir"), expected $owner $mode"
        note "$when: $dir: tmpfs $opts, $owner $mode"
    done
}

# fill_capped DIR CAP_KIB USER: as USER (the one whose unit writes DIR),
# write into DIR until the kernel says ENOSPC; the file stops at the cap, /run's own free space does
# not move (another /run writer may use a little meanwhile: 1 MiB slack, a
# sixteenth of the health cap), and the file is gone afterwards.
fill_capped() {
    local dir=$1 cap=$(( $2 * 1024 )) user=$3 f=$1/.left4me-fill before after full size out
    before=$(df -B1 --output=avail /run | tail -n 1)
    if out=$(runuser -u "$user" -- dd if=/dev/zero of="$f" bs=64K status=none 2>&1); then
        rm -f "$f"; fail "filling $dir as $user did not stop"
    fi
    [[ $out == *'No space left on device'* ]] || { rm -f "$f"; fail "the fill of $dir ended otherwise: $out"; }
    size=$(stat -c %s "$f")
    after=$(df -B1 --output=avail /run | tail -n 1)
    full=$(df -B1 --output=avail "$dir" | tail -n 1)
    rm -f "$f"
    [ ! -e "$f" ] || fail "the fill of $dir is still there"
    note "fill of $dir as $user: ENOSPC at $size bytes (cap $cap), $dir then had $full bytes free; /run free before $before, with the fill $after"
    echo "run-fill $dir $size cap $cap run-free-before $before run-free-during $after" >> "$OUT/run-fill-figures"
    if [ "$size" -gt "$cap" ] || [ "$size" -lt $(( cap - 1024 * 1024 )) ]; then
        fail "$dir took $size bytes, expected close below the cap of $cap"
    fi
    [ "$full" -lt 65536 ] || fail "$dir still had $full bytes free after ENOSPC"
    [ $(( before - after )) -lt $(( 1024 * 1024 )) ] ||
        fail "/run lost $(( before - after )) bytes while $dir was full"
}
