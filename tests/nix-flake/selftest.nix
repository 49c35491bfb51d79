# Inputs the stand-ins of ./pkgs.nix must refuse, as their nixpkgs
# namesakes do (./check runs each and expects its error), and one they must
# accept: a stand-in that accepted everything would make the flake
# evaluation prove nothing.
{
  libDir,
  nixosDir,
  case,
}:
let
  lib = import libDir;
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
  pkgs = pkgsFor "x86_64-linux";
  rust =
    args:
    pkgs.rustPlatform.buildRustPackage (
      {
        pname = "t";
        version = "0";
        src = ./.;
      }
      // args
    );
  cases = {
    accepted = (rust { cargoLock.lockFileContents = ""; }).drvPath;
    missing-argument =
      (pkgs.callPackage ({ lib, no-such-package }: lib.id no-such-package) { }).drvPath;
    no-cargo-deps = (rust { }).drvPath;
    function-attribute =
      (rust {
        cargoLock.lockFileContents = "";
        postInstall = _: "";
      }).drvPath;
    attrset-attribute =
      (rust {
        cargoLock.lockFileContents = "";
        cargoTestFlags = {
          lib = true;
        };
      }).drvPath;
    bad-input =
      (rust {
        cargoLock.lockFileContents = "";
        nativeBuildInputs = [ { } ];
      }).drvPath;
    platform =
      (rust {
        cargoLock.lockFileContents = "";
        meta.platforms = [ "aarch64-darwin" ];
      }).drvPath;
    git-dependency =
      (rust {
        cargoLock.lockFileContents = ''
          [[package]]
          name = "x"
          version = "1.0.0"
          source = "git+https://example.org/x#0000"
        '';
      }).drvPath;
    nixos-test-option =
      (pkgs.testers.runNixOSTest {
        name = "t";
        testScript = "";
        no-such-option = true;
      }).drvPath;
    i686-on-aarch64 = (pkgsFor "aarch64-linux").pkgsi686Linux.glibc.drvPath;
    mkshell-inputs-from = (pkgs.mkShell { inputsFrom = [ "not a package" ]; }).drvPath;
  };
in
cases.${case}
