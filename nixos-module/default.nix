# services.left4me: the host side of left4me on NixOS (docs/nixos.md).
#
# Everything systemd and tmpfiles see is rendered from the canonical
# dist/*.in through ./render.nix, the same sources Debian's package is built
# from; the module only adds what NixOS manages declaratively (users,
# firewall, declared instances and overlays, secrets kept out of the store)
# and drop-ins for the tunables it exposes.
{
  imports = [
    ./options.nix # every option, with its documentation
    ./units.nix # rendered units (request socket too), drop-ins, host.env, tmpfiles layout, users
    ./instances.nix # declared instances and overlays, left4me-declare
    ./update.nix # game updates
    ./metrics.nix # node exporter reads the health checks' metrics
    ./assertions.nix # what would fail at run time, refused at evaluation
  ];

  # Out-of-tree module: NixOS accepts only entries of lib.maintainers here,
  # and nobody of this project has one.
  meta.maintainers = [ ];
}
