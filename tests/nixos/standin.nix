# The VM engineer's stand-in game server (tests/standin/) built with Nix.
# srcds_linux is i386 and static like the Debian build: the real server is a
# 32-bit binary, so the unit's SystemCallArchitectures=native x86 is tested
# for real, and a static binary needs no i386 loader on NixOS. aarch64 hosts
# have no i386 userland; there the stand-in is native (the game itself is
# x86-only, so only the overlay and unit behaviour is tested there).
{ pkgs }:
let
  inherit (pkgs) lib;
  gamePkgs = if pkgs.stdenv.hostPlatform.isx86_64 then pkgs.pkgsi686Linux else pkgs;
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
    buildInputs = [ gamePkgs.glibc.static ];
    # srcds_run keeps its #!/bin/sh like Valve's script; a store shebang
    # would point at an i686 shell the guest never needed.
    dontPatchShebangs = true;
    # -Werror stays with the Debian build: Nix's fortify flags add warnings
    # the standard toolchain does not emit, which says nothing about the code.
    buildPhase = ''
      runHook preBuild
      $CC -O2 -Wall -Wextra -static -o srcds_linux srcds_linux.c
      runHook postBuild
    '';
    installPhase = ''
      runHook preInstall
      install -D -m 0755 srcds_linux "$out/srcds_linux"
      install -D -m 0755 srcds_run "$out/srcds_run"
      install -D -m 0644 gameinfo.txt "$out/left4dead2/gameinfo.txt"
      install -D -m 0644 server.cfg "$out/left4dead2/cfg/server.cfg"
      runHook postInstall
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
