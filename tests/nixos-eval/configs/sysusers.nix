# Users created by systemd-sysusers instead of NixOS's activation script;
# non-default state dir, one instance that does not start at boot, and the
# renamed `enable` option, which must still mean autoStart; health check
# settings host-wide and for one instance.
{
  systemd.sysusers.enable = true;
  users.mutableUsers = false;
  services.left4me = {
    enable = true;
    stateDir = "/srv/l4d2";
    i686Runtime.enable = false;
    health = {
      intervalSec = 5;
      restartsMax = 0;
    };
    instances.a = {
      port = 27020;
      health.graceSec = 30.5;
    };
    instances.b = {
      port = 27021;
      enable = false;
    };
  };
}
