# Users created by systemd-sysusers instead of NixOS's activation script;
# non-default state dir, one instance that does not start at boot, and the
# renamed `enable` option, which must still mean autoStart (and warn);
# health check settings host-wide and for one instance; a host-wide
# environment file; a declared overlay from a store tree (with a symlink,
# which the copy resolves); polkit enabled (with no rule of left4me's).
{ pkgs, ... }:
{
  systemd.sysusers.enable = true;
  # A host with polkit for other reasons: NixOS then writes its rules file,
  # and check looks there for a left4me rule (there must be none).
  security.polkit.enable = true;
  users.mutableUsers = false;
  services.left4me = {
    enable = true;
    stateDir = "/srv/l4d2";
    i686Runtime.enable = false;
    health = {
      intervalSec = 5;
      restartsMax = 0;
    };
    environmentFile = "/run/secrets/left4me-host.env";
    overlays.sm.source = pkgs.runCommand "sourcemod-overlay" { } ''
      mkdir -p "$out/left4dead2/addons/sourcemod/configs" "$out/left4dead2/cfg"
      echo core > "$out/left4dead2/addons/sourcemod/configs/core.cfg"
      echo 'sm_cvar x 1' > "$out/left4dead2/sourcemod.cfg"
      ln -s ../sourcemod.cfg "$out/left4dead2/cfg/sourcemod.cfg"
    '';
    instances.a = {
      port = 27020;
      overlays = [ "sm" ];
      health.graceSec = 30.5;
    };
    instances.b = {
      port = 27021;
      enable = false;
    };
  };
}
