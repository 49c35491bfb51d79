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
  };

  # Where each canonical file lands; a new dist/*.in without a place here
  # fails the build instead of silently not shipping.
  destinations = {
    "left4me-server@.service" = "lib/systemd/system/left4me-server@.service";
    "left4me-overlay@.service" = "lib/systemd/system/left4me-overlay@.service";
    "left4me-reset@.service" = "lib/systemd/system/left4me-reset@.service";
    "left4me-health@.service" = "lib/systemd/system/left4me-health@.service";
    "l4d2-game.slice" = "lib/systemd/system/l4d2-game.slice";
    "l4d2.slice" = "lib/systemd/system/l4d2.slice";
    "left4me-enable@.service" = "lib/systemd/system/left4me-enable@.service";
    "left4me-disable@.service" = "lib/systemd/system/left4me-disable@.service";
    "left4me.sysusers" = "lib/sysusers.d/left4me.conf";
    "left4me.tmpfiles" = "lib/tmpfiles.d/left4me.conf";
    "left4me.rules" = "share/polkit-1/rules.d/left4me.rules";
    "host.env" = "share/left4me/host.env.example";
  };

  unplaced = lib.subtractLists (lib.attrNames destinations) (lib.attrNames rendered);

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
assert lib.assertMsg (
  unplaced == [ ]
) "nixos-module/package.nix: no install destination for dist/${lib.head unplaced}.in";
rustPlatform.buildRustPackage {
  pname = "left4me";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      (lib.fileset.maybeMissing ../build.rs)
      (lib.fileset.maybeMissing ../benches)
      (lib.fileset.fileFilter (file: file.hasExt "rs") ../tests)
    ];
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
  '';

  meta = {
    description = "Host side of left4me: many Left 4 Dead 2 servers sharing one game install through overlayfs";
    license = lib.licenses.mit;
    mainProgram = "left4me-overlay";
    platforms = lib.platforms.linux;
  };
}
