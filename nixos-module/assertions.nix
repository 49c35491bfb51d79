# Assertions and warnings: what the helper would refuse at run time, and
# definitions that would silently lose settings, stop evaluation here with a
# message naming the option to use.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    concatMapStringsSep
    concatStringsSep
    filter
    filterAttrs
    mapAttrsToList
    ;
  common = import ./common.nix { inherit config lib pkgs; };
  inherit (common)
    cfg
    matches
    quote
    instanceNamePattern
    overlayNamePattern
    envKeyPattern
    envValuePattern
    argRefusal
    isHealthKey
    updateUser
    healthUser
    instancePorts
    portRule
    ;

  hiddenFromUnits = [
    "/home"
    "/root"
    "/run/user"
    "/tmp"
    "/var/tmp"
  ];

  reservedInstanceKeys = [
    "L4D2_PORT"
    "L4D2_ARGS"
    "L4D2_OVERLAYS"
    portRule.client_key
    portRule.tv_key
    common.contract.instance_env.cpus.key
  ];
  reservedHostKeys = [
    "LEFT4ME_USER"
    "LEFT4ME_GROUP"
    "LEFT4ME_STATE_DIR"
  ];
  updateHostKeys = [
    "LEFT4ME_UPDATE_RESTART"
    "LEFT4ME_UPDATE_KEEP"
    "LEFT4ME_UPDATE_COPY"
    "LEFT4ME_STEAMCMD"
    "LEFT4ME_STEAM_LOGIN"
  ];

  perInstanceServices = filter (
    unit: builtins.match "left4me-(server|overlay|reset|health|declare)@.+" unit != null
  ) (builtins.attrNames config.systemd.services);

  # Every port of every instance, by the helper's rule; the helper refuses
  # to mount an instance sharing one with a running instance (exit 23).
  portUses = lib.concatLists (
    mapAttrsToList (
      name: inst: map (u: u // { owner = "the ${u.what} of ${quote name}"; }) (instancePorts inst)
    ) cfg.instances
  );
  duplicatePorts = filterAttrs (_: uses: builtins.length uses > 1) (
    lib.groupBy (u: toString u.port) portUses
  );

  instanceAssertions = lib.concatLists (
    mapAttrsToList (name: inst: [
      {
        assertion = matches instanceNamePattern name;
        message = "services.left4me.instances.\"${name}\": an instance name must be 1-32 characters of A-Z a-z 0-9 _ - and start with a letter or digit.";
      }
      {
        assertion = builtins.all (matches overlayNamePattern) inst.overlays;
        message = "services.left4me.instances.\"${name}\".overlays: overlay names must be 1-64 characters of A-Z a-z 0-9 _ - and start with a letter or digit; invalid: ${
          concatStringsSep ", " (map quote (filter (o: !matches overlayNamePattern o) inst.overlays))
        }.";
      }
      {
        assertion = lib.allUnique inst.overlays;
        message = "services.left4me.instances.\"${name}\".overlays: an overlay is listed twice.";
      }
      (
        let
          refusals = filter (r: r != null) (map argRefusal (if inst.args == null then [ ] else inst.args));
        in
        {
          assertion = refusals == [ ];
          message = "services.left4me.instances.\"${name}\".args: ${builtins.head refusals} (the helper would refuse it at start, exit 11).";
        }
      )
      {
        assertion = builtins.all (matches envKeyPattern) (builtins.attrNames inst.environment);
        message = "services.left4me.instances.\"${name}\".environment: variable names must match ${envKeyPattern}.";
      }
      {
        assertion =
          !builtins.any (k: builtins.elem k reservedInstanceKeys) (builtins.attrNames inst.environment);
        message = "services.left4me.instances.\"${name}\".environment: set L4D2_PORT, L4D2_ARGS and L4D2_OVERLAYS through port, args and overlays.";
      }
      {
        # Environment= of the server unit never reaches the health unit.
        assertion = !builtins.any isHealthKey (builtins.attrNames inst.environment);
        message = "services.left4me.instances.\"${name}\".environment: L4D2_HEALTH_* would not reach the health check; set services.left4me.instances.\"${name}\".health instead.";
      }
      {
        assertion = builtins.all (k: !(cfg.hostSettings ? ${k})) (builtins.attrNames inst.environment);
        message = "services.left4me.instances.\"${name}\".environment: ${
          concatStringsSep ", " (filter (k: cfg.hostSettings ? ${k}) (builtins.attrNames inst.environment))
        } also set in services.left4me.hostSettings, whose /etc/left4me/host.env (an EnvironmentFile=) would win over the instance's Environment=; set it in one place.";
      }
      {
        assertion = builtins.all (matches envValuePattern) (builtins.attrValues inst.environment);
        message = "services.left4me.instances.\"${name}\".environment: values must not contain a double quote, backslash, $, ` or newline.";
      }
    ]) cfg.instances
  );
in
{
  config = lib.mkIf cfg.enable {
    warnings = lib.concatMap (i: i.renamedOptionWarnings) (builtins.attrValues cfg.instances);

    assertions =
      instanceAssertions
      # With the default overrideStrategy NixOS writes such a definition as
      # a complete unit file left4me-server@<name>.service that replaces
      # the template for that instance; with "asDropin" it becomes an
      # overrides.conf that hides the template's overrides.conf (systemd
      # loads one drop-in per file name). Either way the instance silently
      # loses settings.
      ++ map (unit: {
        assertion = false;
        message =
          let
            parts = builtins.match "(left4me-[a-z]+@)(.+)" unit;
            template = builtins.elemAt parts 0;
            instance = builtins.elemAt parts 1;
          in
          "systemd.services.\"${unit}\": a definition for one instance replaces or hides what the module and systemd.services.\"${template}\" set for it (systemd loads one file per name). "
          + (
            if template == "left4me-server@" then
              "Set services.left4me.instances.${instance}.serviceConfig instead (a drop-in of its own, read after the template's), or change every instance through systemd.services.\"left4me-server@\"."
            else
              "Change every instance through systemd.services.\"${template}\" instead."
          );
      }) perInstanceServices
      ++ [
        {
          assertion = duplicatePorts == { };
          message = "services.left4me.instances: no two ports may be the same (client = port + ${toString portRule.client_offset}, SourceTV = port + ${toString portRule.tv_offset} unless set or -nohltv; docs/unit.md, \"Ports\"); shared: ${
            concatStringsSep "; " (
              mapAttrsToList (
                port: uses: "${port} is ${concatMapStringsSep " and " (u: u.owner) uses}"
              ) duplicatePorts
            )
          }.";
        }
        {
          assertion = builtins.all (u: u.port <= 65535) portUses;
          message = "services.left4me.instances: ${
            concatMapStringsSep ", " (u: "${u.owner} would be ${toString u.port}") (
              builtins.filter (u: u.port > 65535) portUses
            )
          }, past 65535; set clientPort/tvPort or use a lower port.";
        }
        {
          assertion = builtins.all (matches envKeyPattern) (builtins.attrNames cfg.hostSettings);
          message = "services.left4me.hostSettings: variable names must match ${envKeyPattern}.";
        }
        {
          assertion = builtins.all (matches envValuePattern) (builtins.attrValues cfg.hostSettings);
          message = "services.left4me.hostSettings: values must not contain a double quote, backslash, $, ` or newline.";
        }
        {
          assertion = !cfg.i686Runtime.enable || cfg.i686Runtime.libraries != [ ];
          message = "services.left4me.i686Runtime.libraries: empty; its first entry must be an i686 glibc (pkgs.pkgsi686Linux.glibc), or set i686Runtime.enable = false.";
        }
        {
          assertion =
            !builtins.any (k: builtins.elem k reservedHostKeys) (builtins.attrNames cfg.hostSettings);
          message = "services.left4me.hostSettings: LEFT4ME_USER, LEFT4ME_GROUP and LEFT4ME_STATE_DIR follow services.left4me.user, .group and .stateDir.";
        }
        {
          assertion = !builtins.any isHealthKey (builtins.attrNames cfg.hostSettings);
          message = "services.left4me.hostSettings: set L4D2_HEALTH_* through services.left4me.health.";
        }
        {
          assertion = !builtins.any (k: builtins.elem k updateHostKeys) (builtins.attrNames cfg.hostSettings);
          message = "services.left4me.hostSettings: ${
            concatStringsSep ", " (
              filter (k: builtins.elem k updateHostKeys) (builtins.attrNames cfg.hostSettings)
            )
          }: set through services.left4me.update (restart, keep, copy, login, steamcmd.package).";
        }
        {
          assertion =
            cfg.update.credentialFile == null
            || (
              lib.hasPrefix "/" cfg.update.credentialFile
              && !lib.hasPrefix builtins.storeDir cfg.update.credentialFile
            );
          message = "services.left4me.update.credentialFile: an absolute path outside the Nix store (a root-only file, docs/updates.md), as a string; the store is world-readable.";
        }
        {
          assertion = !cfg.update.timer.enable || cfg.update.enable;
          message = "services.left4me.update.timer.enable: the timer would start left4me-update.service, which has no steamcmd while services.left4me.update.enable is false; set both (and allow the unfree steamcmd, docs/nixos.md).";
        }
        {
          assertion = builtins.all (matches overlayNamePattern) (builtins.attrNames cfg.overlays);
          message = "services.left4me.overlays: overlay names must be 1-64 characters of A-Z a-z 0-9 _ - and start with a letter or digit.";
        }
        {
          # Identified by its store path: a path outside the store could
          # change without the module noticing, and could be anything.
          assertion = builtins.all (o: lib.hasPrefix "${builtins.storeDir}/" "${o.source}") (
            builtins.attrValues cfg.overlays
          );
          message = "services.left4me.overlays.<name>.source: must be in the Nix store (a package, a fetcher's result, or a Nix path value such as ./sourcemod, not a string naming a directory).";
        }
        {
          assertion = builtins.all (f: f == null || !lib.hasPrefix "${builtins.storeDir}/" f) (
            [ cfg.environmentFile ] ++ mapAttrsToList (_: i: i.environmentFile) cfg.instances
          );
          message = "services.left4me.environmentFile and instances.<name>.environmentFile: a file in the Nix store is readable by every local user; name a root-owned file outside it (agenix, sops-nix, or by hand).";
        }
        {
          # The helper refuses uid 0 and gid 0 as the service identity
          # (exit 19): root would own every upper layer.
          assertion = cfg.user != "root" && cfg.group != "root";
          message = "services.left4me.user and .group: \"${
            if cfg.user == "root" then cfg.user else cfg.group
          }\": the helper refuses root as the service identity (exit 19); the game must not run as root.";
        }
        {
          # ProtectHome= (/home, /root, /run/user), and the units' own /tmp
          # and /var/tmp (TemporaryFileSystem=, PrivateTmp=), hide these from
          # the game and the helper.
          assertion =
            !builtins.any (d: cfg.stateDir == d || lib.hasPrefix "${d}/" cfg.stateDir) hiddenFromUnits;
          message = "services.left4me.stateDir: \"${cfg.stateDir}\" is below ${
            lib.findFirst (d: cfg.stateDir == d || lib.hasPrefix "${d}/" cfg.stateDir) "" hiddenFromUnits
          }, which the units' sandbox hides (ProtectHome=, their own /tmp and /var/tmp); use a directory such as /var/lib/left4me or /srv/left4me.";
        }
        {
          assertion = cfg.user != updateUser && cfg.group != updateUser;
          message = "services.left4me.user and .group: \"${updateUser}\" is the update user (docs/updates.md), which must be neither the service user nor share its group; choose another name.";
        }
        {
          assertion = cfg.user != healthUser && cfg.group != healthUser;
          message = "services.left4me.user and .group: \"${healthUser}\" is the health checks' user (docs/health.md), which must be neither the service user nor share its group; choose another name.";
        }
      ];
  };
}
