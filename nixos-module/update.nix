# Game updates (docs/updates.md): the update user, and drop-ins on the
# rendered left4me-update.service, left4me-verify.service and
# left4me-update.timer (installed by ./units.nix whatever these settings
# say, as on Debian).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (import ./common.nix { inherit config lib pkgs; }) cfg updateUser;
in
{
  config = lib.mkIf cfg.enable {
    # Always, like Debian's sysusers line: the unit is installed either way.
    # The home is the unit's StateDirectory= (created by systemd at the
    # first start, 0700), where steamcmd keeps its own files; no line of
    # the state dir's layout names it, so systemd-sysusers' tmpfiles line
    # for it cannot collide.
    users.users.${updateUser} = {
      isSystemUser = true;
      group = updateUser;
      home = "/var/lib/${updateUser}";
      description = "left4me game updates";
    };
    users.groups.${updateUser} = { };

    # The update and the verification (the same steps with --verify, root's
    # alone) run steamcmd alike: the same login and the same exceptions.
    systemd.services = lib.genAttrs [ "left4me-update" "left4me-verify" ] (_: {
      overrideStrategy = "asDropin";
      # A switch during a run would kill steamcmd; the next run uses the
      # new unit.
      restartIfChanged = false;
      serviceConfig = lib.mkMerge [
        (lib.mkIf (cfg.update.credentialFile != null) {
          # The path as given, never copied into the store.
          ${if cfg.update.credentialEncrypted then "LoadCredentialEncrypted" else "LoadCredential"} =
            "steam-login:${cfg.update.credentialFile}";
        })
        (lib.mkIf (cfg.update.enable && cfg.update.steamcmd.bubblewrap) {
          # Exception: bubblewrap (steam-run) needs a user and a mount
          # namespace, and mount/pivot_root/capset to set them up; the
          # canonical unit forbids all three. The allow list is the
          # canonical @system-service plus those, without ~@privileged.
          RestrictNamespaces = "user mnt";
          SystemCallFilter = [
            ""
            "@system-service"
            "@mount"
            "capset"
          ];
        })
      ];
    });

    systemd.timers.left4me-update = lib.mkIf cfg.update.timer.enable {
      overrideStrategy = "asDropin";
      wantedBy = [ "timers.target" ];
      # The empty entry resets the canonical OnCalendar= (a list setting):
      # otherwise both would trigger.
      timerConfig.OnCalendar = [
        ""
        cfg.update.timer.onCalendar
      ];
    };
  };
}
