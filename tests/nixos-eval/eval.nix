# Evaluates services.left4me with nixpkgs' real lib and nixos' real systemd,
# tmpfiles, sysusers and polkit modules (../shared/nixos-eval), then builds
# the /etc tree the way NixOS links it, so tests/nixos-eval/check can hand it
# to the host's systemd. Driven by check; usable by hand:
#   nix-build tests/nixos-eval/eval.nix -A etc --arg libDir ... --arg nixosDir ... --arg configuration ./x.nix
{
  libDir,
  nixosDir,
  configuration,
  module ? ../../nixos-module,
  system ? "x86_64-linux",
  # tests/nix-flake evaluates the flake's NixOS test nodes through this file
  # with its own strict pkgs and the options the test framework adds.
  pkgs ? import ./pkgs.nix {
    lib = import libDir;
    inherit system;
  },
  extraModules ? [ ],
}:
let
  lib = import libDir;

  # nixos/lib/utils.nix, reduced to what the excerpt calls.
  utilsModule =
    { config, ... }:
    {
      _module.args.utils = rec {
        systemdUtils = {
          lib = import (nixosDir + "/systemd-lib.nix") {
            inherit lib config pkgs;
            utils = systemdUtils.utils;
          };
          unitOptions = import (nixosDir + "/systemd-unit-options.nix") { inherit lib systemdUtils; };
          types = import (nixosDir + "/systemd-types.nix") { inherit lib systemdUtils pkgs; };
          utils = {
            inherit systemdUtils toShellPath;
          };
        };
        # Shells are strings in ./stubs.nix (users-groups.nix's shellPath form).
        toShellPath = shell: shell;
      };
      _module.args.pkgs = pkgs;
    };

  evaluated = lib.evalModules {
    modules = [
      utilsModule
      ./stubs.nix
      (nixosDir + "/systemd-core.nix")
      (nixosDir + "/tmpfiles.nix")
      (nixosDir + "/sysusers.nix")
      (nixosDir + "/polkit.nix")
      module
      configuration
    ]
    ++ extraModules;
  };
  inherit (evaluated) config;

  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # nixos/modules/system/etc/make-etc.sh: a source ending in /* links each
  # file of that directory, anything else is one symlink.
  etcEntries = lib.filter (e: e.enable) (lib.attrValues config.environment.etc);
  etcList = lib.concatMapStrings (e: "${e.target}\t${e.source}\n") etcEntries;
  etc =
    if failedAssertions != [ ] then
      throw "Failed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failedAssertions}"
    else
      pkgs.runCommand "etc"
        {
          inherit etcList;
          passAsFile = [ "etcList" ];
        }
        ''
          while IFS=$'\t' read -r target source; do
            mkdir -p "$out/etc/$(dirname "$target")"
            case $source in
              *'/*')
                mkdir -p "$out/etc/$target"
                for fn in $source; do ln -s "$fn" "$out/etc/$target/"; done
                ;;
              *) ln -s "$source" "$out/etc/$target" ;;
            esac
          done < "$etcListPath"
        '';
in
{
  inherit etc config;
  # What the check compares besides the files: evaluated, not rendered.
  report = {
    inherit failedAssertions;
    inherit (config) warnings;
    users = lib.mapAttrs (_: u: {
      inherit (u)
        home
        group
        isSystemUser
        createHome
        ;
    }) config.users.users;
    groups = lib.attrNames config.users.groups;
    udpPorts = config.networking.firewall.allowedUDPPorts;
    nodeExporter = config.services.prometheus.exporters.node;
    sysusers = config.systemd.sysusers.enable;
    # The module sets nothing of polkit (the request socket replaced its rule).
    polkit = { inherit (config.security.polkit) enable extraConfig; };
    instances = lib.mapAttrs (_: i: { inherit (i) autoStart port; }) (
      config.services.left4me.instances
    );
  };
}
