# What a NixOS test node has besides what ../nixos-eval/stubs.nix declares,
# for the options tests/nixos sets and for state a test script asserts:
# - virtualisation.memorySize/cores (nixos/modules/virtualisation/qemu-vm.nix,
#   positive integers) and networking.hostName (the test framework sets it
#   to the node's name);
# - the FHS loader links of nixos/modules/config/ldso.nix and stub-ld.nix
#   (NixOS 24.05 and later): environment.stub-ld.enable defaults to true and
#   then sets environment.ldso/ldso32 to a stub that only prints why a
#   generic binary cannot run; ldso.nix turns them into tmpfiles rules that
#   link the 64-bit loader's FHS path, and on x86_64 /lib/ld-linux.so.2,
#   to it ("L+"), or remove them ("r") when null. A test script that asserts
#   the absence of such a path contradicts its own node (tests/nix-flake/eval.nix
#   looks for that).
{ hostName }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  isx86 = pkgs.stdenv.hostPlatform.isx86_64;
  # The path of the host's own loader (bintools' dynamicLinker) by system.
  ldsoPath =
    {
      x86_64-linux = "/lib64/ld-linux-x86-64.so.2";
      aarch64-linux = "/lib/ld-linux-aarch64.so.1";
    }
    .${pkgs.stdenv.hostPlatform.system};
  stub =
    name:
    pkgs.runCommand name { } ''
      echo 'Could not start dynamically linked executable (NixOS stub-ld stand-in)' > "$out"
    '';
  rule =
    path: target:
    if target == null then
      [ "r ${path} - - - - -" ]
    else
      [
        "d ${dirOf path} 0755 root root - -"
        "L+ ${path} - - - - ${target}"
      ];
in
{
  options = {
    virtualisation.memorySize = mkOption {
      type = types.ints.positive;
      default = 1024;
    };
    virtualisation.cores = mkOption {
      type = types.ints.positive;
      default = 1;
    };
    networking.hostName = mkOption {
      type = types.str;
      default = hostName;
    };
    environment.stub-ld.enable = mkOption {
      type = types.bool;
      default = true;
    };
    environment.ldso = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    environment.ldso32 = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
  };
  config = lib.mkMerge [
    (lib.mkIf config.environment.stub-ld.enable {
      environment.ldso = lib.mkDefault "${stub "stub-ld"}";
      environment.ldso32 = lib.mkIf isx86 (lib.mkDefault "${stub "stub-ld-i686"}");
    })
    {
      assertions = [
        {
          assertion = config.environment.ldso32 == null || isx86;
          message = "Option environment.ldso32 currently only works on x86_64.";
        }
      ];
      systemd.tmpfiles.rules =
        rule ldsoPath config.environment.ldso
        ++ lib.optionals isx86 (rule "/lib/ld-linux.so.2" config.environment.ldso32);
    }
  ];
}
