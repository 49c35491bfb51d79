# The VM engineer's stand-in game server (tests/standin/) built with Nix.
# On x86_64 it is shaped like Valve's files, so the VM test proves
# services.left4me.i686Runtime: srcds_linux is a dynamically linked i386
# binary whose interpreter is /lib/ld-linux.so.2, with no RUNPATH, needing
# libstdc++.so.6 and libgcc_s.so.1, and srcds_run starts with #!/bin/bash.
# NixOS has no /bin/bash and only a stub at /lib/ld-linux.so.2
# (environment.stub-ld); only the unit's sandbox provides the real ones.
# aarch64 hosts have no i386 userland (the game is x86-only); there the
# stand-in is native and static, and only the overlay and unit behaviour
# is tested.
{ pkgs }:
let
  inherit (pkgs) lib;
  x86 = pkgs.stdenv.hostPlatform.isx86_64;
  gamePkgs = if x86 then pkgs.pkgsi686Linux else pkgs;
  src = lib.fileset.toSource {
    root = ../standin;
    fileset = ../standin;
  };
in
{
  installation = gamePkgs.stdenv.mkDerivation {
    pname = "left4me-standin-installation";
    version = "0";
    inherit src;
    buildInputs = lib.optional (!x86) gamePkgs.glibc.static;
    nativeBuildInputs = [ gamePkgs.buildPackages.patchelf ];
    # The paths below are the point: no store shebang, no store
    # interpreter, no RUNPATH.
    dontPatchShebangs = true;
    dontPatchELF = true;
    # -Werror stays with the Debian build: Nix's fortify flags add warnings
    # the standard toolchain does not emit, which says nothing about the code.
    # --no-as-needed: the C code uses nothing of libstdc++/libgcc_s, but the
    # real srcds needs them, so the stand-in must too.
    buildPhase = ''
      runHook preBuild
    ''
    + (
      if x86 then
        ''
          $CC -O2 -Wall -Wextra -c -o srcds_linux.o srcds_linux.c
          $CXX -o srcds_linux srcds_linux.o -Wl,--no-as-needed -lstdc++ -lgcc_s
          patchelf --set-interpreter /lib/ld-linux.so.2 --remove-rpath srcds_linux
          sed '1s|^#!/bin/sh$|#!/bin/bash|' srcds_run > srcds_run.valve
        ''
      else
        ''
          $CC -O2 -Wall -Wextra -static -o srcds_linux srcds_linux.c
          cp srcds_run srcds_run.valve
        ''
    )
    + ''
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      install -D -m 0755 srcds_linux "$out/srcds_linux"
      install -D -m 0755 srcds_run.valve "$out/srcds_run"
      install -D -m 0644 gameinfo.txt "$out/left4dead2/gameinfo.txt"
      install -D -m 0644 server.cfg "$out/left4dead2/cfg/server.cfg"
      # As tests/standin/build: what steamcmd leaves besides the game, the
      # app's manifest (build 1000, StateFlags 4 = fully installed; read by
      # `generation commit`) and the game's version file.
      mkdir -p "$out/steamapps"
      printf '"AppState"\n{\n\t"appid"\t\t"222860"\n\t"name"\t\t"Left 4 Dead 2 Dedicated Server"\n\t"StateFlags"\t\t"4"\n\t"buildid"\t\t"1000"\n}\n' \
        > "$out/steamapps/appmanifest_222860.acf"
      printf 'PatchVersion=2.2.4.3\nProductName=l4d2\nappID=550\nbuildid=1000\n' > "$out/left4dead2/steam.inf"
      runHook postInstall
    '';
    # After fixup (strip), so what is checked is what the VM gets.
    doInstallCheck = x86;
    installCheckPhase = ''
      runHook preInstallCheck
      fail() { echo "standin.nix: $*" >&2; exit 1; }
      [ "$(patchelf --print-interpreter "$out/srcds_linux")" = /lib/ld-linux.so.2 ] ||
        fail "interpreter is $(patchelf --print-interpreter "$out/srcds_linux"), not /lib/ld-linux.so.2"
      [ -z "$(patchelf --print-rpath "$out/srcds_linux")" ] || fail "srcds_linux has a RUNPATH"
      for lib in libstdc++.so.6 libgcc_s.so.1 libc.so.6; do
        patchelf --print-needed "$out/srcds_linux" | grep -qx "$lib" || fail "srcds_linux does not need $lib"
      done
      [ "$(head -n 1 "$out/srcds_run")" = '#!/bin/bash' ] || fail "srcds_run does not start with #!/bin/bash"
      runHook postInstallCheck
    '';
  };

  a2sQuery = pkgs.stdenv.mkDerivation {
    pname = "a2s-query";
    version = "0";
    inherit src;
    buildPhase = ''
      runHook preBuild
      $CC -O2 -Wall -Wextra -o a2s-query a2s-query.c
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      install -D -m 0755 a2s-query "$out/bin/a2s-query"
      runHook postInstall
    '';
  };
}
