# The flake's outputs as `nix flake check` evaluates them, without nixpkgs:
# flake.nix's own `outputs` function called with `self` (its fixpoint) and
# `nixpkgs` = nixpkgs' real lib plus ./pkgs.nix as legacyPackages. Driven by
# ./check; `root` is a copy of the git-tracked files, as a flake sees them.
#   report: every output that `nix flake check` evaluates, forced (derivations
#           to their drvPath, NixOS test nodes to their /etc tree's drvPath,
#           test scripts to strings), plus `findings`;
#   build:  what ./check needs to carry out the package's build.
{
  root,
  libDir,
  nixosDir,
}:
let
  lib = import libDir;
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];
  pkgsFor =
    system:
    import ./pkgs.nix {
      inherit
        lib
        system
        libDir
        nixosDir
        ;
    };
  legacyPackages = lib.genAttrs systems pkgsFor;

  flake = import (root + "/flake.nix");
  inputs.nixpkgs = {
    inherit lib legacyPackages;
    outPath = "/nixpkgs-is-not-available-here";
  };
  # Nix refuses an outputs function that asks for an input it does not
  # declare; an input this file does not model is refused here too.
  unmodelled = lib.subtractLists (lib.attrNames inputs) (lib.attrNames (flake.inputs or { }));
  undeclared = lib.subtractLists ([ "self" ] ++ lib.attrNames (flake.inputs or { })) (
    lib.attrNames (builtins.functionArgs flake.outputs)
  );
  outputs =
    if unmodelled != [ ] then
      throw "tests/nix-flake: flake input ${lib.head unmodelled} is not modelled"
    else if undeclared != [ ] then
      throw "flake.nix: outputs takes `${lib.head undeclared}`, which is not among its inputs"
    else
      flake.outputs (inputs // { inherit self; });
  self = outputs // {
    outPath = root;
    inherit inputs outputs;
  };

  drvPath =
    what: d:
    if lib.isDerivation d then
      d.drvPath
    else
      throw "${what}: not a derivation (nix flake check requires one)";
  perSystem =
    output:
    lib.mapAttrs (
      system: attrs:
      assert lib.assertMsg (lib.elem system systems) "${output}.${system}: unknown system";
      lib.mapAttrs (name: drvPath "${output}.${system}.${name}") attrs
    ) outputs.${output};

  # Overlays: `final: prev:` functions; applied to the stand-in package set,
  # every attribute they add must be a derivation.
  overlays = lib.mapAttrs (
    name: overlay:
    assert lib.assertMsg (lib.isFunction overlay) "overlays.${name}: not a function";
    lib.genAttrs systems (
      system:
      let
        prev = legacyPackages.${system};
        added = overlay final prev;
        final = prev // added;
      in
      lib.mapAttrs (attr: drvPath "overlays.${name} (${system}).${attr}") added
    )
  ) (outputs.overlays or { });

  # NixOS modules: evaluated into a system with the module enabled.
  nixosModules = lib.mapAttrs (
    name: module:
    lib.genAttrs systems (
      system:
      (import ../nixos-eval/eval.nix {
        inherit libDir nixosDir module;
        pkgs = legacyPackages.${system};
        inherit system;
        configuration = {
          services.left4me.enable = true;
        };
        extraModules = [ (import ./nixos-extra.nix { hostName = "nixosModules-${name}"; }) ];
      }).etc.drvPath
    )
  ) (outputs.nixosModules or { });

  # A test script that asserts, on the host, the absence of a path its
  # node's own tmpfiles rules create at boot can never pass.
  createdPaths =
    config:
    let
      fromRules = map (
        r:
        let
          f = lib.filter (s: s != "") (lib.splitString " " r);
        in
        {
          type = lib.elemAt f 0;
          path = lib.elemAt f 1;
        }
      ) config.systemd.tmpfiles.rules;
      fromSettings = lib.concatLists (
        lib.mapAttrsToList (
          _: paths:
          lib.concatLists (
            lib.mapAttrsToList (path: types: map (type: { inherit type path; }) (lib.attrNames types)) paths
          )
        ) config.systemd.tmpfiles.settings
      );
      creates = e: builtins.match "[fFwdDevqQpLcbC][+!-]*" e.type != null;
    in
    map (e: e.path) (lib.filter creates (fromRules ++ fromSettings));
  absentAsserted =
    script:
    map lib.head (
      lib.filter lib.isList (builtins.split "\\.fail\\(f?\"test -[efdLh] (/[^\" {}]*)\"\\)" script)
    );
  findings = lib.concatLists (
    lib.mapAttrsToList (
      system: checks:
      lib.concatLists (
        lib.mapAttrsToList (
          check: t:
          lib.optionals (t ? nodes) (
            lib.concatLists (
              lib.mapAttrsToList (
                node: n:
                map (
                  path:
                  "checks.${system}.${check}: the test script asserts that ${path} does not exist, but node `${node}`'s tmpfiles rules create it at boot"
                ) (lib.intersectLists (absentAsserted t.testScript) (createdPaths n.config))
              ) t.nodes
            )
          )
        ) checks
      )
    ) outputs.checks
  );

  hostSystem = "x86_64-linux";
  package = outputs.packages.${hostSystem}.default;
in
{
  report = {
    packages = perSystem "packages";
    checks = perSystem "checks";
    devShells = perSystem "devShells";
    formatter = lib.mapAttrs (system: drvPath "formatter.${system}") outputs.formatter;
    inherit overlays nixosModules findings;
    testScripts = lib.mapAttrs (
      _: checks: lib.mapAttrs (_: t: t.testScript) (lib.filterAttrs (_: t: t ? testScript) checks)
    ) outputs.checks;
    testNodes = lib.mapAttrs (
      _: checks: lib.mapAttrs (_: t: t.nodeNames) (lib.filterAttrs (_: t: t ? nodeNames) checks)
    ) outputs.checks;
  };

  # The package's build as ./check carries it out, from the evaluated
  # derivation's own attributes.
  build = {
    src = "${package.src}";
    inherit (package)
      cargoBuildType
      cargoCheckType
      doCheck
      postInstall
      ;
    cargoTestFlags = package.cargoTestFlags or [ ];
    checkFlags = package.checkFlags or [ ];
    outPlaceholder = builtins.placeholder "out";
    rustTarget = legacyPackages.${hostSystem}.stdenv.hostPlatform.rust.rustcTarget;
    mainProgram = package.meta.mainProgram or package.pname;
  };
}
