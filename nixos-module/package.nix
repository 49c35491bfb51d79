# The left4me package: the overlay helper in libexec (it is run by systemd,
# like Debian's /usr/libexec/left4me/left4me-overlay; bin/ links to it), its man
# page and shell completions, and the canonical integration files rendered
# with this package's own store paths for users who wire units by hand.
# The NixOS module renders its own copies (its state dir and user may differ).
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
}:
let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  helperRelative = "libexec/left4me/left4me-overlay";

  rendered = import ./render.nix {
    helper = "${placeholder "out"}/${helperRelative}";
    health = "${placeholder "out"}/bin/left4me-health";
    # The system's systemctl on NixOS, without a store path of systemd in
    # this package's closure; the module renders its own copies with
    # config.systemd.package.
    systemctl = "/run/current-system/sw/bin/systemctl";
    stateDir = "/var/lib/left4me";
    user = "left4me";
    group = "left4me";
    # Fixed names, as in the module and on Debian (docs/updates.md).
    updateUser = "left4me-update";
    healthUser = "left4me-health";
    # The unit runs `exec "$LEFT4ME_STEAMCMD"` through /bin/sh, so a bare
    # name is looked up on the unit's PATH at run time. This package must
    # not pull the unfree steamcmd into its closure (nor evaluate it: a
    # system that never allowed unfree packages still uses this package);
    # hand-wired hosts set LEFT4ME_STEAMCMD in host.env, and the module
    # renders its own copy with update.steamcmd.package.
    steamcmd = "steamcmd";
  };

  # Where a rendered file lands follows from its suffix (./destinations.nix,
  # which the module also reads for its list of units).
  destinations = lib.mapAttrs (name: _: import ./destinations.nix name) rendered;

  # Files the crate's sources embed at compile time (include_str!,
  # include_bytes!, include!), found by reading src/ rather than listed by
  # hand: the unit tests of error.rs and health/ compare docs/helper.md and
  # docs/health.md with the code, and a file missing from `src` fails the
  # checkPhase with "couldn't read". Paths are relative to the including
  # file; Nix normalises the `..`. A macro whose argument is not one plain
  # string literal (concat!, env!) cannot be resolved here, so it stops
  # evaluation with a message instead of a build failure far away.
  embedded =
    let
      rustFiles = lib.filter (lib.hasSuffix ".rs") (lib.filesystem.listFilesRecursive ../src);
      includesOf =
        file:
        let
          text = builtins.readFile file;
          literal = lib.filter lib.isList (
            builtins.split "include(_str|_bytes)?![[:space:]]*\\([[:space:]]*\"([^\"\\\\]*)\"[[:space:]]*\\)" text
          );
          any = lib.filter lib.isList (builtins.split "include(_str|_bytes)?![[:space:]]*\\(" text);
        in
        if lib.length literal != lib.length any then
          throw "nixos-module/package.nix: ${toString file} has an include_str!/include_bytes!/include! whose argument is not one string literal; add the file it reads to `src` by hand"
        else
          map (m: dirOf file + "/${lib.elemAt m 1}") literal;
    in
    lib.unique (lib.concatMap includesOf rustFiles);

  # Quoted heredocs keep the text byte for byte; the placeholder for $out
  # inside it is rewritten by Nix like anywhere else in the build script.
  installRendered = lib.concatStrings (
    lib.mapAttrsToList (name: dest: ''
      mkdir -p "$(dirname "$out/${dest}")"
      cat > "$out/${dest}" <<'LEFT4ME_RENDERED_EOF'
      ${rendered.${name}}LEFT4ME_RENDERED_EOF
    '') destinations
  );
in
rustPlatform.buildRustPackage {
  pname = "left4me";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (
      [
        ../Cargo.toml
        ../Cargo.lock
        ../src
        (lib.fileset.maybeMissing ../build.rs)
        (lib.fileset.maybeMissing ../benches)
        (lib.fileset.fileFilter (file: file.hasExt "rs") ../tests)
      ]
      ++ embedded
    );
  };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  # Integration tests mount overlays and need root; scripts/test runs them.
  # The unit tests of the library and binary run here.
  cargoTestFlags = [
    "--lib"
    "--bins"
  ];

  # libexec/ is the path the units use (Debian's layout); bin/ keeps
  # `nix run` and lib.getExe working. The NixOS module does not put the
  # package on PATH.
  postInstall = ''
    mkdir -p "$out/libexec/left4me"
    mv "$out/bin/left4me-overlay" "$out/${helperRelative}"
    ln -s "../${helperRelative}" "$out/bin/left4me-overlay"
  ''
  + installRendered
  + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    helper="$out/${helperRelative}"
    "$helper" --generate man > left4me-overlay.man
    # The section comes from the page itself (.TH name SECTION ...).
    section=$(sed -n 's/^\.TH [^ ]* \([0-9][a-z]*\).*/\1/p' left4me-overlay.man | head -n 1)
    mv left4me-overlay.man "left4me-overlay.''${section:-8}"
    installManPage "left4me-overlay.''${section:-8}"
    installShellCompletion --cmd left4me-overlay \
      --bash <("$helper" --generate complete-bash) \
      --zsh <("$helper" --generate complete-zsh) \
      --fish <("$helper" --generate complete-fish)
    "$out/bin/left4me-health" --generate man > left4me-health.8
    installManPage left4me-health.8
    # The admin command (docs/admin.md): bin/left4me.
    "$out/bin/left4me" --generate man > left4me.8
    installManPage left4me.8
    installShellCompletion --cmd left4me \
      --bash <("$out/bin/left4me" --generate complete-bash) \
      --zsh <("$out/bin/left4me" --generate complete-zsh) \
      --fish <("$out/bin/left4me" --generate complete-fish)
  '';

  meta = {
    description = "Host side of left4me: many Left 4 Dead 2 servers sharing one game install through overlayfs";
    license = lib.licenses.mit;
    mainProgram = "left4me-overlay";
    platforms = lib.platforms.linux;
  };
}
