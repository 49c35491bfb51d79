# The package's DEP-8 tests (debian/tests/control), run as autopkgtest
# would on this testbed: from a copy of the source tree, as root, with
# AUTOPKGTEST_TMP/AUTOPKGTEST_ARTIFACTS, failing on a non-zero exit and, without
# allow-stderr, on any stderr output. The guest is offline, so Depends beyond
# the package itself must already be in the image.
# budget: 150
src=$SHARE/src
control=$src/debian/tests/control
[ -f "$control" ] || fail "no debian/tests/control in the source tree"
rm -rf /tmp/dep8-src && cp -a "$src" /tmp/dep8-src
dpkg -s left4me >/dev/null 2>&1 || fail "left4me not installed before the DEP-8 tests"

ran=0 failed=0
run_stanza() {
    local tests=$1 cmd=$2 restr=$3 deps=$4 dir=${5:-debian/tests} t dep name rc
    deps=${deps//@builddeps@/}; deps=${deps//@/}
    for dep in ${deps//,/ }; do
        name=${dep%%(*}; name=${name%%:*}
        [[ $name =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || continue
        dpkg -s "$name" >/dev/null 2>&1 || { echo "DEP-8: dependency $name not in the image"; failed=$((failed + 1)); return; }
    done
    local -a items=()
    if [ -n "$cmd" ]; then items=("cmd:$cmd"); else for t in ${tests//,/ }; do items+=("$t"); done; fi
    for t in "${items[@]}"; do
        export AUTOPKGTEST_TMP AUTOPKGTEST_ARTIFACTS
        AUTOPKGTEST_TMP=$(mktemp -d); AUTOPKGTEST_ARTIFACTS=$OUT/dep8-artifacts; mkdir -p "$AUTOPKGTEST_ARTIFACTS"
        echo "--- DEP-8 ${t} (restrictions: ${restr:-none})"
        rc=0
        if [ "${t#cmd:}" != "$t" ]; then
            (cd /tmp/dep8-src && sh -ec "${t#cmd:}") 2>/tmp/dep8.err || rc=$?
        else
            chmod +x "/tmp/dep8-src/$dir/$t"
            (cd /tmp/dep8-src && "./$dir/$t") 2>/tmp/dep8.err || rc=$?
        fi
        cat /tmp/dep8.err >&2
        ran=$((ran + 1))
        if [ $rc -ne 0 ]; then
            echo "DEP-8 $t: FAIL (exit $rc)"; failed=$((failed + 1))
        elif [ -s /tmp/dep8.err ] && [[ " ${restr//,/ } " != *" allow-stderr "* ]]; then
            echo "DEP-8 $t: FAIL (stderr output without allow-stderr)"; failed=$((failed + 1))
        else
            echo "DEP-8 $t: PASS"
        fi
        rm -rf "$AUTOPKGTEST_TMP"
    done
}

tests='' cmd='' restr='' deps='' dir='' field=''
flush() {
    if [ -n "$tests$cmd" ]; then run_stanza "$tests" "$cmd" "$restr" "${deps:-@}" "${dir:-debian/tests}"; fi
    tests='' cmd='' restr='' deps='' dir='' field=''
}
while IFS= read -r line || [ -n "$line" ]; do
    case $line in
        '#'*) continue ;;
        '') flush; continue ;;
        [[:space:]]*) val=${line#"${line%%[![:space:]]*}"} ;;
        *:*) field=${line%%:*}; val=${line#*:}; val=${val# } ;;
    esac
    case ${field,,} in
        tests) tests="$tests $val" ;;
        test-command) cmd="$cmd $val" ;;
        restrictions) restr="$restr $val" ;;
        depends) deps="$deps $val" ;;
        tests-directory) dir=$val ;;
    esac
done < "$control"
flush
[ "$ran" -gt 0 ] || fail "debian/tests/control declares no test"
[ "$failed" -eq 0 ] || fail "$failed of the DEP-8 tests failed"
note "$ran DEP-8 tests passed"
