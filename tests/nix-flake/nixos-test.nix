# testers.runNixOSTest as far as it can be evaluated here. The real one
# (nixos/lib/testing/) evaluates the test as a module, each node as a NixOS
# system, and the test script; building it boots VMs, which needs nixpkgs.
# Here: the same module interface (unknown attributes are errors, as in the
# real option set), each node evaluated with the module through
# ../nixos-eval/eval.nix (nixpkgs' real lib, nixos' real systemd, tmpfiles,
# sysusers and polkit code) plus the few options the nodes set that live in
# modules not available here (./nixos-extra.nix), and the script forced to a
# string. The result is a derivation whose drvPath depends on every node's
# /etc tree (so their units are rendered and their assertions hold) and on
# the script; it is never built.
{
  lib,
  libDir,
  nixosDir,
  pkgs,
}:
test:
let
  inherit (lib) mkOption types;

  # nixos/lib/testing/{name,nodes,testScript,meta,driver}.nix: the options a
  # test module may set that matter to evaluation.
  interface = {
    options = {
      name = mkOption { type = types.str; };
      nodes = mkOption {
        type = types.lazyAttrsOf types.deferredModule;
        default = { };
      };
      defaults = mkOption {
        type = types.deferredModule;
        default = { };
      };
      testScript = mkOption { type = types.either types.str (types.functionTo types.str); };
      skipLint = mkOption {
        type = types.bool;
        default = false;
      };
      skipTypeCheck = mkOption {
        type = types.bool;
        default = false;
      };
      globalTimeout = mkOption {
        type = types.ints.positive;
        default = 3600;
      };
      meta = mkOption {
        type = types.attrsOf types.raw;
        default = { };
      };
    };
  };

  cfg =
    (lib.evalModules {
      modules = [
        interface
        test
      ];
    }).config;

  nodes = lib.mapAttrs (
    name: node:
    import ../nixos-eval/eval.nix {
      inherit libDir nixosDir pkgs;
      inherit (pkgs.stdenv.hostPlatform) system;
      # The nodes import the module themselves, as a user's system does.
      module = { };
      configuration = {
        imports = [
          cfg.defaults
          node
        ];
      };
      extraModules = [ (import ./nixos-extra.nix { hostName = name; }) ];
    }
  ) cfg.nodes;

  testScript =
    if lib.isFunction cfg.testScript then
      cfg.testScript { nodes = lib.mapAttrs (_: n: n.config) nodes; }
    else
      cfg.testScript;
in
pkgs.runCommand "vm-test-run-${cfg.name}"
  {
    inherit testScript;
    nodeEtc = lib.mapAttrsToList (_: n: n.etc) nodes;
  }
  ''
    echo "tests/nix-flake: vm-test-run-${cfg.name} is an evaluation stand-in; it is never built" >&2
    exit 1
  ''
// {
  inherit nodes testScript;
  inherit (cfg) skipLint;
  nodeNames = lib.attrNames cfg.nodes;
}
