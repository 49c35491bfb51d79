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

# Prints the .deb to test: $LEFT4ME_DEB, else the newest target/deb build,
# building it with scripts/build-deb when none exists.
vm_find_deb() {
    local root=$1 deb
    if [ -n "${LEFT4ME_DEB:-}" ]; then
        [ -f "$LEFT4ME_DEB" ] || { echo "LEFT4ME_DEB=$LEFT4ME_DEB does not exist" >&2; return 1; }
        echo "$LEFT4ME_DEB"; return
    fi
    deb=$(ls -t "$root"/target/deb/left4me_*_amd64.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        [ -x "$root/scripts/build-deb" ] || {
            echo "no target/deb/left4me_*_amd64.deb and no scripts/build-deb to make one" >&2
            return 1
        }
        "$root/scripts/build-deb" >&2
        deb=$(ls -t "$root"/target/deb/left4me_*_amd64.deb 2>/dev/null | head -n1 || true)
        [ -n "$deb" ] || { echo "scripts/build-deb produced no .deb" >&2; return 1; }
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

# vm_boot WORK IMAGE PHASE: one boot of the qcow2 overlay in WORK; returns the
# guest's status (number of failed scenarios), or 1 on timeout/no status.
vm_boot() {
    local work=$1 image=$2 phase=$3 t0 pid started='' status
    local timeout=${LEFT4ME_VM_TIMEOUT:-1500}
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
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$started" ] && [ -e "$work/share/out/started-$phase" ]; then
            started=$(( $(now_ms) - t0 ))
            printf '%s %d.%d s\n' "$phase" $((started / 1000)) $(( (started % 1000) / 100 )) >> "$work/boot-times"
            echo "   $phase: guest up after $((started / 1000)).$(( (started % 1000) / 100 )) s"
        fi
        sleep 0.2
    done
    wait "$pid" || { echo "   $phase: qemu exited with $? (timeout is $timeout s)" >&2; }
    echo "   $phase: boot-to-poweroff $(( ($(now_ms) - t0) / 1000 )) s"
    status=$(cat "$work/share/out/status" 2>/dev/null || true)
    if [ -z "$status" ]; then
        echo "   $phase: no status from the guest; console tail:" >&2
        tail -n 40 "$work/console-$phase.log" >&2 || true
        return 1
    fi
    return "$status"
}
