# shellcheck shell=bash
# Host-side helpers for tests/vm/run and scripts/demo (sourced).

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# One VM run at a time per checkout: runs share target/vm/ and, on a 2-core
# machine, two TCG guests at once only make both slower.
vm_lock() {
    local root=$1
    mkdir -p "$root/target/vm"
    exec 9>"$root/target/vm/.lock"
    if ! flock -n 9; then
        echo "waiting for another VM run in this checkout to finish..." >&2
        flock -w 3600 9 || { echo "gave up waiting for target/vm/.lock" >&2; return 1; }
    fi
}

vm_install_host_tools() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    [ ${#need[@]} -eq 0 ] && return 0
    # Some machines carry a backported qemu-utils that Breaks the distro's
    # qemu-system-common; take both from the same release.
    if [[ " ${need[*]} " == *" qemu-system-x86 "* ]]; then
        local rel
        rel=$(. /etc/os-release && echo "$VERSION_CODENAME")
        need+=("qemu-utils/$rel")
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --allow-downgrades \
        -qq "${need[@]}" >/dev/null
}

# promtool, for s35's check of the health checks' metrics: from Debian's
# prometheus package of this host's release, unpacked into the image cache,
# not installed (that would start a Prometheus server on this host), and
# carried to the guest through the share. One Go binary; runs in either guest.
vm_promtool() {
    local cache=${LEFT4ME_VM_CACHE:-/var/cache/left4me-vm}/promtool dl
    if [ ! -x "$cache/usr/bin/promtool" ]; then
        dl=$(mktemp -d)
        (cd "$dl" && apt-get download -qq prometheus 2>/dev/null) || {
            apt-get update -qq && (cd "$dl" && apt-get download -qq prometheus)
        }
        mkdir -p "$cache"
        dpkg-deb -x "$dl"/prometheus_*.deb "$cache"
        rm -rf "$dl"
    fi
    echo "$cache/usr/bin/promtool"
}

# vm_find_deb ROOT SUITE: the .deb to test in SUITE: $LEFT4ME_DEB, else the
# newest of the suite's own builds (scripts/build-deb --suite SUITE, run
# when there is none).
vm_find_deb() {
    local root=$1 suite=$2 deb
    if [ -n "${LEFT4ME_DEB:-}" ]; then
        [ -f "$LEFT4ME_DEB" ] || { echo "LEFT4ME_DEB=$LEFT4ME_DEB does not exist" >&2; return 1; }
        echo "$LEFT4ME_DEB"; return
    fi
    deb=$(ls -t "$root/target/deb/$suite"/left4me_*_amd64.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        "$root/scripts/build-deb" --suite "$suite" >&2
        deb=$(ls -t "$root/target/deb/$suite"/left4me_*_amd64.deb 2>/dev/null | head -n1 || true)
        [ -n "$deb" ] || { echo "scripts/build-deb --suite $suite produced no .deb" >&2; return 1; }
    fi
    echo "$deb"
}

# The 9p share: the .deb, the stand-in, the guest scripts, a source tree
# for the DEP-8 tests; out/ receives the results.
vm_prepare_share() {
    local work=$1 deb=$2 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    rm -rf "$work"
    mkdir -p "$work/share/out" "$work/share/src" "$work/share/standin"
    cp "$deb" "$work/share/"
    cp -a "$root/target/standin/." "$work/share/standin/"
    cp -a "$root/tests/vm/guest" "$work/share/guest"
    mkdir -p "$work/share/bin"
    cp "$(vm_promtool)" "$work/share/bin/promtool"
    (cd "$root" && git ls-files -z | grep -zv '^target/' | xargs -0 cp --parents -t "$work/share/src" 2>/dev/null) || true
}

vm_accel() {
    # The nested paravirtual /dev/kvm seen on some hosts (no kvm_intel or
    # kvm_amd module) breaks or slows stock kernels: use KVM only where the
    # host has real VMX/SVM.
    if { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; } && [ -w /dev/kvm ]; then
        echo "-accel kvm -cpu host"
    else
        echo "-accel tcg,thread=multi -cpu max"
    fi
}

# Time for a boot and the runner's start, and the poweroff, beside the
# scenarios' own budgets.
VM_BOOT_ALLOWANCE=300

# vm_plan WORK PHASE SUITE [ONLY]: writes the scenarios of the boot (ONLY,
# for the main phase, replaces them) to WORK/share/plan-PHASE for the
# guest's runner.
vm_plan() {
    local work=$1 phase=$2 suite=$3 only=${4:-} here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    # shellcheck source=tests/vm/guest/plan
    . "$here/guest/plan"
    if [ "$phase" = main ] && [ -n "$only" ]; then
        echo $only > "$work/share/plan-$phase"
    else
        plan "$phase" "$suite" > "$work/share/plan-$phase"
    fi
}

# vm_limit WORK PHASE: the seconds the boot may take: LEFT4ME_VM_TIMEOUT, or
# the allowance plus every planned scenario's budget.
vm_limit() {
    local work=$1 phase=$2 s total=$VM_BOOT_ALLOWANCE n
    if [ -n "${LEFT4ME_VM_TIMEOUT:-}" ]; then
        echo "$LEFT4ME_VM_TIMEOUT"
        return
    fi
    . "$work/share/guest/plan"
    for s in $(cat "$work/share/plan-$phase"); do
        n=$(budget "$work/share/guest" "$s") || return 1
        total=$((total + n))
    done
    echo "$total"
}

# vm_boot WORK IMAGE PHASE: one boot of the qcow2 overlay in WORK, running
# the plan vm_plan wrote; returns the number of scenarios that failed or
# never ran, or 1 with no status. Each planned scenario without a result is
# added to the results as NOT-RUN, with the reason.
vm_boot() {
    local work=$1 image=$2 phase=$3 t0 pid started='' status timeout rc=0 s missing=0 why=''
    local -a plan=() budgets=()
    local done_n=0 n now deadline
    timeout=$(vm_limit "$work" "$phase") || return 1
    read -r -a plan < "$work/share/plan-$phase"
    . "$work/share/guest/plan"
    for s in "${plan[@]}"; do budgets+=("$(budget "$work/share/guest" "$s")"); done
    echo "$phase" > "$work/share/phase"
    rm -f "$work/share/out/status"
    t0=$(now_ms)
    # shellcheck disable=SC2046
    timeout "$timeout" qemu-system-x86_64 $(vm_accel) -smp 2 -m 3072 -M q35 \
        -nographic -no-reboot -nic none \
        -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 panic=-1" \
        -drive "file=$work/overlay.qcow2,if=virtio,format=qcow2,discard=unmap" \
        -virtfs "local,path=$work/share,mount_tag=share,security_model=none,id=share" \
        -serial "file:$work/console-$phase.log" -monitor none -display none \
        </dev/null &
    pid=$!
    # A watchdog on progress: the guest's runner stops a scenario at its
    # budget, so a scenario with no result a minute past that means the
    # guest itself is stuck; it is stopped then, not at the boot's limit.
    deadline=$((t0 + VM_BOOT_ALLOWANCE * 1000))
    while kill -0 "$pid" 2>/dev/null; do
        now=$(now_ms)
        if [ -z "$started" ] && [ -e "$work/share/out/started-$phase" ]; then
            started=$((now - t0))
            printf '%s %d.%d s\n' "$phase" $((started / 1000)) $(( (started % 1000) / 100 )) >> "$work/boot-times"
            echo "   $phase: guest up after $((started / 1000)).$(( (started % 1000) / 100 )) s"
            deadline=$((now + (${budgets[0]:-0} + 120) * 1000))
        fi
        n=$(grep -cE "^(PASS|FAIL) $phase/" "$work/share/out/results" 2>/dev/null || true)
        if [ "${n:-0}" -gt "$done_n" ]; then
            done_n=$n
            deadline=$((now + (${budgets[done_n]:-0} + 120) * 1000))
        fi
        if [ "$now" -gt "$deadline" ]; then
            why="the guest made no progress for its budget and 120 s, in ${plan[done_n]:-the poweroff}"
            [ -n "$started" ] || why="the guest's runner did not start within $VM_BOOT_ALLOWANCE s"
            echo "   $phase: $why; stopping it" >&2
            kill "$pid" 2>/dev/null
            break
        fi
        sleep 0.2
    done
    wait "$pid" || rc=$?
    echo "   $phase: boot-to-poweroff $(( ($(now_ms) - t0) / 1000 )) s (limit $timeout s)"
    case $rc in
        0|143) [ -n "$why" ] || why="the guest stopped before it" ;;
        124) why="the boot's limit of $timeout s was reached"
             echo "   $phase: $why" >&2 ;;
        *) why="qemu exited with $rc"
           echo "   $phase: $why" >&2 ;;
    esac
    for s in $(cat "$work/share/plan-$phase"); do
        grep -qE "^(PASS|FAIL) $phase/$s " "$work/share/out/results" 2>/dev/null && continue
        printf 'NOT-RUN %s/%s (%s)\n' "$phase" "$s" "$why" >> "$work/share/out/results"
        missing=$((missing + 1))
    done
    status=$(cat "$work/share/out/status" 2>/dev/null || true)
    if [ -z "$status" ]; then
        echo "   $phase: no status from the guest; console tail:" >&2
        tail -n 40 "$work/console-$phase.log" >&2 || true
        return 1
    fi
    [ $((status + missing)) -eq 0 ] || return 1
    return 0
}
