# The `pkgs` of nixpkgs.legacyPackages.<system> as tests/nix-flake/eval.nix
# hands it to flake.nix: nixpkgs itself cannot be fetched here. What decides
# whether `nix flake check` evaluates is modelled, not assumed:
# - callPackage is lib.callPackageWith, so a package file's arguments must
#   exist (a missing one is the "called without required argument" error);
# - the builders return real `derivation`s, and eval.nix forces their
#   drvPath, which makes Nix coerce every attribute to a string exactly as it
#   does for nixpkgs' builders (a function, or an attrset that is not a
#   derivation, fails there);
# - each builder checks the arguments its nixpkgs namesake checks at
#   evaluation time (noted per builder, with the nixpkgs file it follows).
# None of them builds anything: their builder is a script that refuses.
# The buildable helpers of ../nixos-eval/pkgs.nix (runCommand, writeText,
# ...) are reused as they are: they are real derivations already.
{
  lib,
  system,
  libDir,
  nixosDir,
  allowUnfree ? false,
}:
let
  base = import ../nixos-eval/pkgs.nix { inherit lib system; };

  # lib.systems.elaborate is what nixpkgs puts in stdenv.hostPlatform.
  hostPlatform = lib.systems.elaborate system;
  i686Platform = lib.systems.elaborate "i686-linux";

  refuse = what: [
    "-c"
    "echo 'tests/nix-flake: ${what} is an evaluation stand-in; it is never built' >&2; exit 1"
  ];

  # make-derivation.nix's checkDependencyList: each element of the input
  # lists is a derivation, a path, a string or null (nested lists allowed).
  checkDeps =
    name: attr: deps:
    lib.imap1 (
      i: d:
      if d == null || lib.isDerivation d || lib.isPath d || lib.isString d then
        d
      else if lib.isList d then
        checkDeps name attr d
      else
        throw "Dependency is not of a valid type: element ${toString i} of ${attr} for ${name}"
    ) deps;

  # pkgs/stdenv/generic/make-derivation.nix with check-meta.nix: name or
  # pname+version, a finalAttrs function or an attrset, meta.platforms and
  # meta.badPlatforms against the host (lib.meta.availableOn), unfree
  # licences refused unless allowed, meta and passthru kept off the
  # derivation's environment, `env` merged into it, passthru merged into the
  # result.
  mkDerivationFor =
    platform: fnOrAttrs:
    let
      attrs = if lib.isFunction fnOrAttrs then lib.fix fnOrAttrs else fnOrAttrs;
      name =
        attrs.name or (
          if attrs ? pname && attrs ? version then
            "${attrs.pname}-${attrs.version}"
          else
            throw "stdenv.mkDerivation: neither `name` nor `pname` and `version` given"
        );
      meta = attrs.meta or { };
      unfree = lib.any (l: !(l.free or true)) (lib.toList (meta.license or [ ]));
      depAttrs = [
        "buildInputs"
        "nativeBuildInputs"
        "propagatedBuildInputs"
        "propagatedNativeBuildInputs"
        "checkInputs"
        "nativeCheckInputs"
      ];
      # `env` is merged into the environment (without __structuredAttrs
      # its values must be strings, which the coercion below checks).
      env =
        builtins.removeAttrs attrs [
          "meta"
          "passthru"
          "pos"
          "env"
        ]
        // (attrs.env or { })
        // lib.genAttrs (lib.filter (a: attrs ? ${a}) depAttrs) (a: checkDeps name a attrs.${a});
      drv = derivation (
        env
        // {
          inherit name;
          inherit (platform) system;
          builder = "/bin/sh";
          args = refuse "stdenv.mkDerivation (${name})";
        }
      );
    in
    if !lib.meta.availableOn platform { inherit meta; } then
      throw "Package ‘${name}’ is not available on the requested hostPlatform ${platform.system} (meta.platforms)"
    else if unfree && !allowUnfree then
      throw "Package ‘${name}’ has an unfree license, refusing to evaluate."
    else
      # check-meta.nix reads meta (licence, platforms, broken, insecure) on
      # every evaluation; forcing all of it is a little stricter.
      builtins.deepSeq meta drv
      // (attrs.passthru or { })
      // {
        inherit meta;
        overrideAttrs = f: mkDerivationFor platform (attrs // (if lib.isFunction f then f attrs else f));
      };

  mkDerivation = mkDerivationFor hostPlatform;

  # A package whose contents this check never needs: only its store path.
  pkg =
    name:
    mkDerivation {
      inherit name;
      meta.platforms = lib.platforms.all;
    };

  # pkgs/build-support/rust/import-cargo-lock.nix: its argument set is
  # closed, one of lockFile/lockFileContents, and every git dependency needs
  # an outputHashes entry unless allowBuiltinFetchGit; registry crates need
  # their checksum from the lock file.
  importCargoLock =
    {
      lockFile ? null,
      lockFileContents ? null,
      allowBuiltinFetchGit ? false,
      outputHashes ? { },
      extraRegistries ? { },
    }:
    let
      text =
        if lockFile != null then
          builtins.readFile lockFile
        else if lockFileContents != null then
          lockFileContents
        else
          throw "importCargoLock: either lockFile or lockFileContents must be set";
      packages = (builtins.fromTOML text).package or [ ];
      gitMissing = lib.filter (
        p:
        lib.hasPrefix "git+" (p.source or "")
        && !(outputHashes ? "${p.name}-${p.version}")
        && !allowBuiltinFetchGit
      ) packages;
      noChecksum = lib.filter (
        p: lib.hasPrefix "registry+" (p.source or "") && !(p ? checksum) && extraRegistries == { }
      ) packages;
    in
    if gitMissing != [ ] then
      throw "importCargoLock: no hash was found while vendoring the git dependency ${(lib.head gitMissing).name}-${(lib.head gitMissing).version}; add it to outputHashes"
    else if noChecksum != [ ] then
      throw "importCargoLock: package ${(lib.head noChecksum).name} has no checksum in the lock file"
    else
      mkDerivation {
        name = "cargo-vendor-dir";
        lockFileText = text;
      };

  # pkgs/build-support/rust/build-rust-package/default.nix: cargoLock,
  # cargoHash or cargoVendorDir must be set ("cargoHash, cargoVendorDir, or
  # cargoLock must be set"); cargoLock goes through importCargoLock and is
  # removed from the environment (it is an attrset: left in, drvPath would
  # fail); buildType defaults to release and checkType to buildType; the
  # cargo hooks and rustc join nativeBuildInputs; doCheck defaults to true.
  # src: nixpkgs fails without it only at unpackPhase; here at once, since
  # the emulated build needs it.
  buildRustPackage =
    args:
    let
      cargoLock = args.cargoLock or null;
      cargoVendorDir = args.cargoVendorDir or null;
      buildType = args.buildType or "release";
      cargoDeps =
        if cargoVendorDir != null then
          null
        else if cargoLock != null then
          importCargoLock cargoLock
        else if args.cargoHash or null == null then
          throw "cargoHash, cargoVendorDir, or cargoLock must be set"
        else
          mkDerivation {
            name = "${args.pname or "cargo"}-vendor";
            outputHash = args.cargoHash;
            outputHashMode = "recursive";
            inherit (args) src;
          };
    in
    if !(args ? src || args ? srcs) then
      throw "buildRustPackage: no src (the real build stops at unpackPhase: variable $src or $srcs should point to the source)"
    else
      mkDerivation (
        builtins.removeAttrs args [
          "depsExtraArgs"
          "cargoUpdateHook"
          "cargoLock"
        ]
        // {
          inherit cargoDeps;
          cargoBuildType = buildType;
          cargoCheckType = args.checkType or buildType;
          nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [
            (pkg "cargo-build-hook")
            (pkg "cargo-check-hook")
            (pkg "cargo-install-hook")
            (pkg "cargo-setup-hook")
            (pkg "rustc")
          ];
          doCheck = args.doCheck or true;
        }
      );

  # pkgs/build-support/mkshell/default.nix: `packages` join
  # nativeBuildInputs; each input list also gets those of `inputsFrom`
  # (catAttrs, so each must be an attrset), minus inputsFrom itself.
  mkShell =
    {
      name ? "nix-shell",
      packages ? [ ],
      inputsFrom ? [ ],
      buildInputs ? [ ],
      nativeBuildInputs ? [ ],
      propagatedBuildInputs ? [ ],
      propagatedNativeBuildInputs ? [ ],
      ...
    }@attrs:
    let
      merge = attr: own: own ++ lib.subtractLists inputsFrom (lib.flatten (lib.catAttrs attr inputsFrom));
      rest = builtins.removeAttrs attrs [
        "name"
        "packages"
        "inputsFrom"
        "buildInputs"
        "nativeBuildInputs"
        "propagatedBuildInputs"
        "propagatedNativeBuildInputs"
        "shellHook"
      ];
    in
    mkDerivation (
      rest
      // {
        inherit name;
        buildInputs = merge "buildInputs" buildInputs;
        nativeBuildInputs = packages ++ merge "nativeBuildInputs" nativeBuildInputs;
        propagatedBuildInputs = merge "propagatedBuildInputs" propagatedBuildInputs;
        propagatedNativeBuildInputs = merge "propagatedNativeBuildInputs" propagatedNativeBuildInputs;
        shellHook = lib.concatStringsSep "\n" (
          lib.catAttrs "shellHook" (lib.reverseList inputsFrom ++ [ attrs ])
        );
        phases = [ "buildPhase" ];
        preferLocalBuild = true;
      }
    );

  # trivial-builders' writeShellScriptBin is a mkDerivation: it has
  # overrideAttrs (nixos' makeJobScript renames unit scripts with it) and
  # meta.mainProgram (lib.getExe).
  writeShellScriptBin =
    name: text:
    let
      make =
        drvName:
        base.writeTextFile {
          name = drvName;
          executable = true;
          destination = "/bin/${name}";
          text = "#!/bin/bash\n${text}";
        }
        // {
          meta.mainProgram = name;
          overrideAttrs = f: make ((f { name = drvName; }).name or drvName);
        };
    in
    make name;

  self = base // {
    inherit lib writeShellScriptBin;
    callPackage = lib.callPackageWith self;
    stdenv = {
      inherit hostPlatform mkDerivation;
      buildPlatform = hostPlatform;
      inherit (hostPlatform) isx86_64 isAarch64 isLinux;
      cc.cc.lib = pkg "gcc-lib";
    };
    rustPlatform = {
      inherit buildRustPackage importCargoLock;
    };
    inherit mkShell;
    installShellFiles = pkg "install-shell-files";
    patchelf = pkg "patchelf";
    glibc = pkg "glibc" // {
      static = pkg "glibc-static";
    };
    nixfmt = pkg "nixfmt";
    nixfmt-tree = pkg "nixfmt-tree";
    deadnix = pkg "deadnix";
    rust-analyzer = pkg "rust-analyzer";
    clippy = pkg "clippy";
    rustfmt = pkg "rustfmt";
    buildPackages = base.buildPackages // {
      inherit (self) patchelf;
    };

    testers = rec {
      runNixOSTest = import ./nixos-test.nix {
        inherit lib libDir nixosDir;
        pkgs = self;
      };
      # nixosTest is the older entry point with the same module interface.
      nixosTest = runNixOSTest;
    };

    # pkgs/top-level/variants.nix: the i686 set exists on x86 Linux only.
    pkgsi686Linux =
      if hostPlatform.isx86 then
        base.pkgsi686Linux
        // {
          stdenv = {
            hostPlatform = i686Platform;
            mkDerivation = mkDerivationFor i686Platform;
            cc.cc.lib = base.pkgsi686Linux.stdenv.cc.cc.lib;
          };
          buildPackages.patchelf = self.patchelf;
        }
      else
        throw "i686 Linux package set can only be used with the x86 family.";
  };
in
self
