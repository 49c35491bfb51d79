# shellcheck shell=bash disable=SC2015
# left4me-declare STATE_DIR MANIFEST all|instance NAME
#
# Root's half of services.left4me's declared instances and overlays, run by
# left4me-declare.service (boot, and every switch that changes the
# manifest: `all`) and left4me-declare@NAME.service (before each mount of
# NAME, wanted by left4me-overlay@NAME: `instance NAME`):
# - instances/NAME/instance.env of each declared instance: the module's
#   lines from the store plus the L4D2_* lines of the environment files,
#   which hold the secrets the store must not (docs/nixos.md, "Secrets");
# - instances/NAME/layer/left4dead2/cfg/server.cfg (serverConfig), written
#   as the service user, whose layer it is;
# - overlays/NAME of declared overlays, copied from the store, only while
#   no mounted instance uses them;
# - `all` only: instance.env of instances no longer declared is removed.
#
# The manifest (a store file the module writes) is the only input that says
# what to read or write: the service user can start left4me-declare@ with any
# NAME (through left4me-server@NAME), which selects a declared entry or none.
# Root reads no file the service user can write; it writes only into
# root-owned directories (checked), and into the user's layer only as the
# user. Messages name files, lines and keys, never a value.
set -u -o pipefail
export LC_ALL=C
umask 077

state=$1 manifest=$2 mode=$3 only=${4:-}
status=0
say() { echo "left4me-declare: $*"; }
fail() {
    echo "left4me-declare: $*" >&2
    status=1
}

name_re='^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$'
case $mode in
    all) ;;
    instance) [[ $only =~ $name_re ]] || { fail "not an instance name: the name is 1-32 of A-Z a-z 0-9 _ -"; exit 1; } ;;
    *) fail "usage: left4me-declare STATE_DIR MANIFEST all|instance NAME"; exit 2 ;;
esac

user='' group='' hostenv=''
inames=() ibody=() ienv=() icfg=() onames=() osrc=()
while IFS=$'\t' read -r kind a b c d; do
    case $kind in
        user) user=$a ;;
        group) group=$a ;;
        hostenv) hostenv=$a ;;
        instance) inames+=("$a") ibody+=("$b") ienv+=("$c") icfg+=("$d") ;;
        overlay) onames+=("$a") osrc+=("$b") ;;
        '' | '#'*) ;;
        *) fail "$manifest: unknown entry $kind"; exit 1 ;;
    esac
done < "$manifest"
[ -n "$user" ] && [ -n "$group" ] || { fail "$manifest: no user or group"; exit 1; }

# Several runs (boot, a switch, instances starting) share the state dir.
nixos=$state/overlays/.left4me-nixos
if [ -L "$nixos" ] || { [ -e "$nixos" ] && [ ! -d "$nixos" ]; }; then
    fail "$nixos is not a directory"
    exit 1
fi
[ -d "$nixos" ] || mkdir -m 0700 -- "$nixos" || exit 1
exec 9>> "$nixos/lock" || exit 1
# Bounded: a run that waits longer says so instead of holding up the
# instance starts queued behind it.
flock -w 120 9 || { fail "another left4me-declare held $nixos/lock for 120 s"; exit 1; }

header() { echo "# Declared in the NixOS configuration (services.left4me.instances.$1);"; }

# The instances whose runtime/NAME/merged is a mount point now.
mounted_instances() {
    awk -v pre="$state/runtime/" '
        index($5, pre) == 1 && $5 ~ /\/merged$/ {
            n = substr($5, length(pre) + 1)
            sub(/\/merged$/, "", n)
            if (n !~ /\//) print n
        }' /proc/self/mountinfo | sort -u
}
is_mounted() { mounted_instances | grep -qxF -- "$1"; }

# Mounted instances that use overlay $1, from the helper's copy of their
# instance.env (root-only runtime/.left4me/, written at mount); an instance
# whose copy is missing counts as a user.
overlay_users() {
    local i env line list
    for i in $(mounted_instances); do
        env=$state/runtime/.left4me/$i.env
        if [ -f "$env" ] && [ ! -L "$env" ] && [ "$(stat -c %u -- "$env")" = 0 ]; then
            line=$(grep -m 1 '^L4D2_OVERLAYS=' -- "$env") || line=
            list=${line#L4D2_OVERLAYS=}
            list=${list#\"}
            list=${list%\"}
            case " $list " in *" $1 "*) echo "$i" ;; esac
        else
            echo "$i"
        fi
    done
}

# A root-owned directory nobody else may write (then nobody but root can
# add, rename or replace what is in it).
root_dir() {
    local uid perm
    [ -d "$1" ] && [ ! -L "$1" ] || return 1
    read -r uid perm < <(stat -c '%u %a' -- "$1")
    [ "$uid" = 0 ] && (((8#$perm & 8#022) == 0))
}

# The environment file is read only through directories and symlinks that
# nobody but root controls: PATH is walked from / as the kernel resolves it,
# every directory passed through must be root's and writable by nobody else
# (a sticky one excepted: there others cannot replace root's entries), every
# symlink met must be root's (in a sticky directory anyone may have made
# it), and the walk must end at a root-owned regular file nobody else may
# write. Prints the resolved path, which is what gets read: the service
# user cannot choose what root reads, nor swap it after this check.
# Symlinks are followed (agenix links /run/agenix/NAME into
# /run/agenix.d/N/).
safe_file() {
    local f=$1 todo cur=/ c next t hops=0 uid perm
    [[ $f == /* ]] || { echo "$f: not an absolute path"; return 1; }
    trusted_dir / || return 1
    todo=${f#/}
    while [ -n "$todo" ]; do
        c=${todo%%/*}
        if [ "$c" = "$todo" ]; then todo=; else todo=${todo#*/}; fi
        case $c in
            '' | .) continue ;;
            ..) cur=$(dirname -- "$cur"); continue ;;
        esac
        next=${cur%/}/$c
        if [ -L "$next" ]; then
            hops=$((hops + 1))
            ((hops <= 40)) || { echo "$f: too many levels of symlinks"; return 1; }
            uid=$(stat -c %u -- "$next")
            [ "$uid" = 0 ] || { echo "$f: the symlink $next is owned by uid $uid, not root"; return 1; }
            t=$(readlink -- "$next")
            if [[ $t == /* ]]; then
                cur=/
                todo=${t#/}${todo:+/$todo}
            else
                todo=$t${todo:+/$todo}
            fi
        elif [ ! -e "$next" ]; then
            echo "$f: $next does not exist"
            return 1
        elif [ -n "$todo" ]; then
            [ -d "$next" ] || { echo "$f: $next is not a directory"; return 1; }
            trusted_dir "$next" || return 1
            cur=$next
        else
            [ -f "$next" ] || { echo "$f: $next is not a regular file"; return 1; }
            read -r uid perm < <(stat -c '%u %a' -- "$next")
            [ "$uid" = 0 ] || { echo "$f: $next is owned by uid $uid, not root"; return 1; }
            (((8#$perm & 8#022) == 0)) || { echo "$f: $next is writable by others than root"; return 1; }
            (((8#$perm & 8#004) == 0)) || echo "warning: $f is readable by every user" >&2
            echo "$next"
            return 0
        fi
    done
    echo "$f: does not name a file"
    return 1
}
trusted_dir() { # DIR (in safe_file, whose $f it names)
    local uid perm
    read -r uid perm < <(stat -c '%u %a' -- "$1")
    [ "$uid" = 0 ] || { echo "$f: $1 is owned by uid $uid, not root"; return 1; }
    (((8#$perm & 8#022) == 0)) || (((8#$perm & 8#1000) != 0)) || { echo "$f: $1 is writable by others than root"; return 1; }
}

# The L4D2_* assignments of an environment file, as they are written there;
# instance.env's syntax (src/envfile.rs), a little stricter: no tab or other
# control character anywhere, so every line keeps its meaning when copied.
re_skip='^ *([#;].*)?$'
re_assign='^ *([A-Za-z_][A-Za-z0-9_]*) *= *(.*)$'
re_key='^L4D2_[A-Z0-9_]+$'
re_single="^'[^']*' *\$"
re_double='^"([^"\\]|\\.)*" *$'
re_plain='^[^"'"'"'\\]*$'
secret_lines() {
    local name=$1 f n=0 line key value size
    f=$(safe_file "$name") || { echo "$f" >&2; return 1; }
    size=$(stat -c %s -- "$f")
    ((size <= 65536)) || { echo "$name: $size bytes, more than the 65536 an instance.env may have" >&2; return 1; }
    [ "$(tr -d '\000' < "$f" | wc -c)" = "$size" ] || { echo "$name: contains a NUL byte" >&2; return 1; }
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        if [[ $line =~ [[:cntrl:]] ]]; then
            echo "$name:$n: contains a tab, carriage return or other control character" >&2
            return 1
        fi
        [[ $line =~ $re_skip ]] && continue
        [[ $line =~ $re_assign ]] || { echo "$name:$n: not KEY=value" >&2; return 1; }
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        [[ $key =~ $re_key ]] || { echo "$name:$n: $key may not be set here: only L4D2_* keys (L4D2_ then A-Z 0-9 _)" >&2; return 1; }
        case $key in L4D2_PORT | L4D2_OVERLAYS)
            echo "$name:$n: $key is declared in the NixOS configuration (port, overlays), not here" >&2
            return 1
            ;;
        esac
        if ! [[ $value =~ $re_single || $value =~ $re_double || $value =~ $re_plain ]]; then
            echo "$name:$n: the value of $key is not value, \"value\" or 'value' (quotes closed, \\ only inside double quotes)" >&2
            return 1
        fi
        printf '%s\n' "$line"
    done < "$f"
}

write_env() { # NAME BODY ENVFILE|-
    local name=$1 body=$2 envfile=$3 dir=$state/instances/$1 tmp
    if ! root_dir "$dir"; then
        fail "$name: $dir is not a root-owned directory only root may write (systemd-tmpfiles makes it one); instance.env not written"
        return 1
    fi
    tmp=$(mktemp -- "$dir/.instance.env.XXXXXX") || { fail "$name: cannot create a file in $dir"; return 1; }
    if (
        header "$name"
        echo "# root-owned on purpose: change it there, not here."
        if [ -n "$hostenv" ]; then secret_lines "$hostenv" || exit 1; fi
        cat -- "$body" || exit 1
        if [ "$envfile" != - ]; then secret_lines "$envfile" || exit 1; fi
    ) > "$tmp" 2> "$tmp.err" && chown -- "root:$group" "$tmp" && chmod 0640 -- "$tmp" &&
        mv -fT -- "$tmp" "$dir/instance.env"; then
        cat -- "$tmp.err" >&2
        rm -f -- "$tmp.err"
        return 0
    fi
    # Fail closed: without its secrets (a server password, say) the instance
    # must not start with what it had before or with none.
    fail "$name: $(paste -sd ' ' "$tmp.err"); $dir/instance.env removed, the instance cannot start until this is fixed"
    rm -f -- "$tmp" "$tmp.err" "$dir/instance.env"
    return 1
}

# As the service user: the layer is the user's, so whatever the user put
# there (a symlink, a FUSE mount) can only make this write where the user
# may, or wait. Root itself never looks at anything in the layer (a stat of
# a FUSE mount of the user's can wait forever, unkillably): it only creates
# the layer in the instance's root-owned directory (mkdir of an existing
# name fails without looking at it). The child shares no pipe with root
# (output discarded: nothing the user prints reaches root's memory or
# journal), does not get the lock's descriptor, and is waited for 30 s at
# most; a child stuck longer is left behind, the lock is not.
write_cfg() { # NAME CFGFILE
    local name=$1 cfgfile=$2 layer=$state/instances/$1/layer child rc
    if is_mounted "$name"; then
        say "$name: mounted; its serverConfig is written before its next start"
        return 0
    fi
    if mkdir -m 0755 -- "$layer" 2> /dev/null; then
        chown -- "$user:$group" "$layer" || { fail "$name: cannot give $layer to $user"; return 1; }
    fi
    # shellcheck disable=SC2016 # for the inner shell
    setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs -- \
        "$BASH" -c 'set -e; umask 022; cd -- "$1"; mkdir -p left4dead2/cfg
            t=$(mktemp left4dead2/cfg/.server.cfg.XXXXXX); cat -- "$2" > "$t"; chmod 0644 "$t"
            mv -f -- "$t" left4dead2/cfg/server.cfg' sh "$layer" "$cfgfile" \
        < /dev/null > /dev/null 2>&1 9>&- &
    child=$!
    for _ in $(seq 300); do
        kill -0 "$child" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$child" 2> /dev/null; then
        kill -KILL "$child" 2> /dev/null
        fail "$name: writing server.cfg into $layer as $user took more than 30 s; given up"
        return 1
    fi
    wait "$child" && return 0
    rc=$?
    fail "$name: writing server.cfg into $layer as $user failed (exit $rc): is $layer/left4dead2/cfg writable by $user?"
    return 1
}

install_overlay() { # NAME SOURCE
    local name=$1 src=$2 dest=$state/overlays/$1 users new old
    if [ -d "$dest" ] && [ ! -L "$dest" ] && [ "$(cat -- "$nixos/$name.source" 2> /dev/null)" = "$src" ]; then
        return 0
    fi
    users=$(overlay_users "$name" | paste -sd ' ' -)
    if [ -n "$users" ]; then
        say "overlay $name: in use by mounted $users; its new tree is installed once none of them is mounted (before the next instance start, or: systemctl restart left4me-declare)"
        return 0
    fi
    if [ -L "$dest" ]; then
        fail "overlay $name: $dest is a symlink; not replaced"
        return 1
    fi
    new=$(mktemp -d -- "$state/overlays/.$name.new.XXXXXX") || { fail "overlay $name: cannot create a directory in $state/overlays"; return 1; }
    # The module resolved every symlink in a Nix build (instances.nix,
    # resolvedTree): root follows none here (-P), so nothing outside the
    # store decides what root copies.
    if ! { cp -RP -- "$src/." "$new/" && chmod -R u+rwX,go+rX,go-w -- "$new"; }; then
        rm -rf -- "$new"
        fail "overlay $name: copying $src failed"
        return 1
    fi
    old=$state/overlays/.$name.old.$$
    if [ -e "$dest" ]; then mv -T -- "$dest" "$old" || { rm -rf -- "$new"; fail "overlay $name: cannot move $dest aside"; return 1; }; fi
    mv -T -- "$new" "$dest" || { fail "overlay $name: cannot rename the new tree into place"; return 1; }
    rm -rf -- "$old"
    printf '%s\n' "$src" > "$nixos/$name.source"
    say "overlay $name: installed from $src"
}

# Instances no longer declared: their instance.env goes if the module wrote
# it (root's, in a root-owned dir, the module's header first); everything
# else stays (docs/nixos.md). Only names this script declared before are
# looked at ($nixos/declared, root's own list): the other entries of
# instances/ are the service user's, and a stat of one (a FUSE mount of the
# user's) could wait forever. A declared instance's directory is root's,
# which the user can neither replace (instances/ is sticky) nor mount on.
prune() {
    local dir name declared env first
    [ -f "$nixos/declared" ] || return 0
    while IFS= read -r name; do
        [[ $name =~ $name_re ]] || continue
        dir=$state/instances/$name
        [ -d "$dir" ] && [ ! -L "$dir" ] || continue
        for declared in "${inames[@]}"; do
            [ "$declared" != "$name" ] || continue 2
        done
        env=$dir/instance.env
        [ -f "$env" ] && [ ! -L "$env" ] || continue
        [ "$(stat -c %u -- "$dir")" = 0 ] && [ "$(stat -c %u -- "$env")" = 0 ] || continue
        IFS= read -r first < "$env" || continue
        [ "$first" = "$(header "$name")" ] || continue
        rm -f -- "$env"
        say "instance $name is no longer declared: removed $env; $dir and $state/runtime/$name are kept"
    done < "$nixos/declared"
}

for i in "${!inames[@]}"; do
    name=${inames[$i]}
    [ "$mode" = all ] || [ "$name" = "$only" ] || continue
    write_env "$name" "${ibody[$i]}" "${ienv[$i]}" || continue
    [ "${icfg[$i]}" = - ] || write_cfg "$name" "${icfg[$i]}"
done
for i in "${!onames[@]}"; do
    install_overlay "${onames[$i]}" "${osrc[$i]}"
done
if [ "$mode" = all ]; then
    prune
    printf '%s\n' "${inames[@]}" > "$nixos/declared.new" && mv -f -- "$nixos/declared.new" "$nixos/declared"
fi
exit "$status"
