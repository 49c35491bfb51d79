# Declared instances and overlays: their directories, the root service that
# writes what the configuration declares into the state dir (instance.env
# with the secrets of environmentFile, server.cfg, overlay trees;
# ./left4me-declare.sh), start at boot, firewall.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    concatStringsSep
    filterAttrs
    mapAttrsToList
    optional
    ;
  common = import ./common.nix { inherit config lib pkgs; };
  inherit (common) cfg declaredEnvLines;

  declare = pkgs.writeShellScript "left4me-declare" (builtins.readFile ./left4me-declare.sh);

  # An overlay's tree with every symlink resolved, by a Nix build: its
  # sandbox shows nothing but the store, so a link that leaves the store
  # (into a directory the service user writes, or to a root-only file)
  # fails this build as an unprivileged build user, instead of being
  # followed by root's copy in left4me-declare, which copies the result
  # without following anything. The game sees no store path either way.
  resolvedTree =
    name: o:
    pkgs.runCommand "left4me-overlay-${name}" { } ''
      # find -L follows links: what is still a link leads out of the store
      # or nowhere.
      out_of_store=$(find -L ${o.source}/ -type l -printf '%P\n')
      if [ -n "$out_of_store" ]; then
        echo "services.left4me.overlays.${name}.source: symlinks that lead out of the Nix store (or nowhere), which left4me does not follow:" $out_of_store >&2
        exit 1
      fi
      mkdir "$out"
      cp -RL -- ${o.source}/. "$out"/
    '';

  # What left4me-declare may write, and from where; tab-separated. Only
  # store paths and the environment files' paths: no secret is ever here.
  manifest = pkgs.writeText "left4me-declared" (
    concatStringsSep "" (
      [
        "user\t${cfg.user}\n"
        "group\t${cfg.group}\n"
      ]
      ++ optional (cfg.environmentFile != null) "hostenv\t${cfg.environmentFile}\n"
      ++ mapAttrsToList (
        name: inst:
        concatStringsSep "\t" [
          "instance"
          name
          "${pkgs.writeText "left4me-instance-${name}.env" (
            concatStringsSep "" (map (l: "${l}\n") (declaredEnvLines inst))
          )}"
          (if inst.environmentFile != null then inst.environmentFile else "-")
          (
            if inst.serverConfig != null then
              "${pkgs.writeText "left4me-${name}-server.cfg" inst.serverConfig}"
            else
              "-"
          )
        ]
        + "\n"
      ) cfg.instances
      ++ mapAttrsToList (name: o: "overlay\t${name}\t${resolvedTree name o}\n") cfg.overlays
    )
  );

  declareService = mode: {
    after = [ "systemd-tmpfiles-setup.service" ];
    # awk (mountinfo), flock and setpriv; coreutils and grep are in every
    # service's default path.
    path = [
      pkgs.gawk
      pkgs.util-linux
    ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${declare} ${cfg.stateDir} ${manifest} ${mode}";
      # A oneshot has no start timeout by default, and the user may make a
      # start job of left4me-declare@ irreversible (through its server's
      # start): the script bounds its own waits (the lock 120 s, the
      # server.cfg writer 30 s); this bounds the rest.
      TimeoutStartSec = "5min";
    };
  };
in
{
  config = lib.mkIf cfg.enable {
    # The instance dir is root's, so the service user can neither change
    # what root writes into it nor plant anything there; instances/ is
    # root-owned and sticky, so the user cannot rename or replace it either.
    # instance.env itself is left4me-declare's (tmpfiles could not merge
    # the secrets, and would rewrite the file at every switch without them).
    systemd.tmpfiles.settings."20-left4me-instances" = lib.mkMerge (
      mapAttrsToList (name: _: {
        "${cfg.stateDir}/instances/${name}".d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
      }) cfg.instances
    );

    # Boot and every switch that changes the manifest (its path is in
    # ExecStart=, so the unit changes with it and NixOS restarts it).
    # Removing an instance removes its drop-in, but its root-owned
    # instance.env would keep it startable with the old settings, and the
    # service user cannot delete it: `all` removes it (docs/nixos.md).
    systemd.services.left4me-declare = lib.recursiveUpdate (declareService "all") {
      description = "Declared left4me instances and overlays (instance.env with secrets, server.cfg, overlay trees)";
      wantedBy = [ "multi-user.target" ];
    };

    # Before each mount of an instance, so that a secret changed since the
    # last run, a new serverConfig or a new overlay tree (which must not
    # change under a mounted instance) applies at its next start. It stops
    # with the overlay unit (StopWhenUnneeded=), so every start runs it.
    # The service user has it started indirectly with any name it likes (a
    # `start NAME` request to root's request server, which checks only that
    # NAME is an instance name and builds left4me-server@NAME from it): the
    # name only selects a declared entry.
    systemd.services."left4me-declare@" = lib.recursiveUpdate (declareService "instance %i") {
      description = "Declared left4me instance %i before its mount";
      unitConfig.StopWhenUnneeded = true;
      # Collected once it fails too, like the overlay and health units: no
      # failed run of an invented name stays loaded (twelfth review).
      unitConfig.CollectMode = "inactive-or-failed";
    };
    systemd.services."left4me-overlay@" = {
      wants = [ "left4me-declare@%i.service" ];
      after = [ "left4me-declare@%i.service" ];
    };

    # Not wantedBy on systemd.services."left4me-server@<name>": that would
    # create the instance's overrides.conf (see common.instanceDropinName).
    systemd.targets.multi-user.wants = mapAttrsToList (name: _: "left4me-server@${name}.service") (
      filterAttrs (_: inst: inst.autoStart) cfg.instances
    );

    networking.firewall.allowedUDPPorts = lib.concatLists (
      mapAttrsToList (
        _: inst: map (u: u.port) (builtins.filter (u: u.what != "client port") (common.instancePorts inst))
      ) (filterAttrs (_: inst: inst.openFirewall) cfg.instances)
    );
  };
}
