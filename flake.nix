{
  description = "left4me: many Left 4 Dead 2 dedicated servers on one host, sharing one game installation through overlayfs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: _prev: {
        left4me = final.callPackage ./nixos-module/package.nix { };
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nixos-module/package.nix { };
      });

      # The module builds the package from the importing system's own
      # nixpkgs; services.left4me.package overrides that.
      nixosModules.default = ./nixos-module;

      checks = forAllSystems (
        pkgs:
        let
          vmTests = import ./tests/nixos { inherit pkgs; };
          nixFiles = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ./.;
          };
        in
        {
          package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          vm-lifecycle = vmTests.lifecycle;
          vm-sysusers = vmTests.sysusers;
          vm-update = vmTests.update;
          formatting =
            pkgs.runCommand "left4me-nix-formatting"
              {
                nativeBuildInputs = [
                  pkgs.nixfmt
                  pkgs.deadnix
                ];
              }
              ''
                cd ${nixFiles}
                find . -name '*.nix' -print0 | xargs -0 nixfmt --check
                find . -name '*.nix' -print0 | xargs -0 deadnix --fail
                touch "$out"
              '';
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.rust-analyzer
            pkgs.clippy
            pkgs.rustfmt
            pkgs.nixfmt
            pkgs.deadnix
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
