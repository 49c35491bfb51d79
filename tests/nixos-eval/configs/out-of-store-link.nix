# A declared overlay whose store tree holds a symlink out of the store, into
# a directory the service user writes. Resolving it is a Nix build
# (nixos-module/instances.nix, resolvedTree), whose sandbox shows nothing
# but the store: the build must fail and name the link, so root's copy in
# left4me-declare never follows it. (configs/sysusers.nix has a link within
# its tree, which is resolved into a plain file.)
{ pkgs, ... }:
{
  services.left4me = {
    enable = true;
    i686Runtime.enable = false;
    overlays.outside.source = pkgs.runCommand "overlay-link-outside" { } ''
      mkdir -p "$out/left4dead2/cfg"
      ln -s /var/lib/left4me/instances/web/layer/stolen.cfg "$out/left4dead2/cfg/server.cfg"
    '';
  };
}
