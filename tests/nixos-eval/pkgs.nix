# The few nixpkgs builders and packages that the module and nixos' systemd,
# tmpfiles, sysusers and polkit code call, as plain derivations run by the
# host's bash and coreutils: nixpkgs itself cannot be fetched here. Each
# builder keeps the contract of its nixpkgs namesake that this code relies on
# (output layout, passAsFile); the packages are empty stand-ins whose store
# paths only end up as strings in the generated files, except left4me's own
# package.nix, which is called for real (see callPackage). The stricter
# stand-ins of tests/nix-flake/pkgs.nix extend this set.
{ lib, system }:
let
  runCommand =
    name: env: script:
    derivation (
      {
        inherit name system;
        builder = "/bin/bash";
        # stdenv's setup.sh runs every build with nullglob, and
        # generateUnits relies on it for packages without etc/systemd/.
        # The trailing builtin: `bash -c` execs a script's last external
        # command, and Nix 2.8 (Debian) then often reports the builder
        # killed by signal 9 (8-25 of 30 such builds here; none of 60 with
        # a builtin last).
        args = [
          "-eo"
          "pipefail"
          "-O"
          "nullglob"
          "-c"
          (script + "\n:")
        ];
        PATH = "/usr/bin:/bin";
      }
      // builtins.removeAttrs env [
        "preferLocalBuild"
        "allowSubstitutes"
      ]
    );

  writeTextFile =
    {
      name,
      text,
      destination ? "",
      executable ? false,
    }:
    runCommand name
      {
        inherit text;
        passAsFile = [ "text" ];
      }
      ''
        target="$out"${lib.escapeShellArg destination}
        mkdir -p "$(dirname "$target")"
        cp "$textPath" "$target"
        ${lib.optionalString executable ''chmod +x "$target"''}
      '';

  # An empty package: only its store path matters to the files under test.
  standIn =
    name: extra:
    runCommand name { } ''
      mkdir -p "$out/bin" "$out/lib"
      ${extra}
    '';

  # The loader and libraries an i686 srcds_linux needs: empty files at the
  # paths the real packages have them, so bind-mount sources exist.
  i686Lib =
    name: files: standIn name (lib.concatMapStrings (f: ''touch "$out/lib/${f}"'' + "\n") files);
  self = {
    inherit lib runCommand writeTextFile;
    stdenv.hostPlatform = {
      inherit system;
      isx86_64 = system == "x86_64-linux";
    };
    # package.nix generates the man page only where the build can run the
    # helper; the stand-in build runs nothing.
    stdenv.buildPlatform.canExecute = _: true;

    writeShellScript =
      name: text:
      writeTextFile {
        inherit name;
        executable = true;
        text = "#!/bin/bash\n${text}";
      };
    writeShellScriptBin =
      name: text:
      writeTextFile {
        inherit name;
        executable = true;
        destination = "/bin/${name}";
        text = "#!/bin/bash\n${text}";
      };
    writeText =
      name: text:
      writeTextFile {
        inherit name text;
      };
    writeTextDir =
      path: text:
      writeTextFile {
        inherit text;
        name = builtins.baseNameOf path;
        destination = "/${path}";
      };

    # lndir's merge semantics (directories merged, files symlinked) are what
    # cp -rs does for one source tree.
    symlinkJoin =
      { name, paths }:
      runCommand name { } ''
        mkdir -p "$out"
        for p in ${lib.escapeShellArgs paths}; do
          [ ! -d "$p" ] || cp -rs --no-preserve=mode "$p"/. "$out"/
        done
      '';
    buildPackages.xorg.lndir = runCommand "lndir" { } ''
      mkdir -p "$out/bin"
      printf '#!/bin/bash\nexec cp -rs --no-preserve=mode "$1"/. "$2"/\n' > "$out/bin/lndir"
      chmod +x "$out/bin/lndir"
    '';

    # services.left4me.package defaults to pkgs.callPackage ./package.nix { }:
    # the real package.nix through a real callPackage, so its arguments, its
    # render.nix call and its install destinations are evaluated (postInstall
    # is in the environment, so building this forces them). Only the Rust
    # build is a stand-in: systemd-analyze verify needs the helper's and the
    # health check's paths to be executable files; they must never run, so
    # they say what they are and fail. tests/nix-flake builds the real thing.
    callPackage = lib.callPackageWith self;
    installShellFiles = standIn "install-shell-files" "";
    rustPlatform.buildRustPackage =
      args:
      runCommand "${args.pname}-${args.version}-evaluation-stand-in"
        {
          inherit (args) postInstall;
          passAsFile = [ "postInstall" ];
        }
        ''
          mkdir -p "$out/bin" "$out/libexec/left4me"
          printf '#!/bin/sh\necho "left4me: evaluation stand-in, not the helper" >&2\nexit 1\n' > "$out/libexec/left4me/left4me-overlay"
          printf '#!/bin/sh\necho "left4me: evaluation stand-in, not the health check" >&2\nexit 1\n' > "$out/bin/left4me-health"
          chmod +x "$out/libexec/left4me/left4me-overlay" "$out/bin/left4me-health"
        '';

    # nixpkgs refuses an unfree package that config does not allow, at the
    # first use of its path; the module must not touch it unless
    # services.left4me.update.enable is set.
    steamcmd = throw "Package 'steamcmd' has an unfree license ('unfreeRedistributable'), refusing to evaluate. (evaluation stand-in)";

    coreutils = standIn "coreutils" "";
    findutils = standIn "findutils" "";
    gnugrep = standIn "gnugrep" "";
    gnused = standIn "gnused" "";
    gawk = standIn "gawk" "";
    systemd = standIn "systemd" "";
    util-linux = standIn "util-linux" ''
      printf '#!/bin/sh\nexit 1\n' > "$out/bin/nsenter"
      chmod +x "$out/bin/nsenter"
    '';
    polkit = standIn "polkit" "";
    # tests/nixos: the lifecycle node speaks the request protocol with it.
    socat = standIn "socat" ''touch "$out/bin/socat"'';
    shadow = standIn "shadow" "";
    bash = standIn "bash" ''touch "$out/bin/bash"'';

    pkgsi686Linux = {
      glibc = i686Lib "glibc-i686" [
        "ld-linux.so.2"
        "libc.so.6"
      ];
      stdenv.cc.cc.lib = i686Lib "gcc-i686-lib" [
        "libstdc++.so.6"
        "libgcc_s.so.1"
      ];
    };
  };
in
self
