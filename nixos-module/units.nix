# The canonical units (the request socket and its server among them), slice,
# tmpfiles layout and host.env, all rendered from dist/*.in (./render.nix),
# plus the drop-ins for the tunables the module exposes and the service user.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    concatStringsSep
    filter
    mapAttrsToList
    mkDefault
    mkIf
    mkMerge
    optionalAttrs
    ;
  common = import ./common.nix { inherit config lib pkgs; };
  inherit (common)
    cfg
    rendered
    unitNames
    instanceDropinName
    healthLines
    quote
    matches
    healthUser
    ;

  # Environment= lines as NixOS writes them for systemd.services.<n>.environment;
  # `%` doubled, since systemd expands specifiers in unit files.
  environmentLines =
    env:
    concatStringsSep "" (
      mapAttrsToList (
        k: v: "Environment=${builtins.toJSON "${k}=${lib.replaceStrings [ "%" ] [ "%%" ] v}"}\n"
      ) env
    );
  # A declared instance's own settings, in a drop-in of its own (see
  # instanceDropinName): the module never defines
  # systemd.services."left4me-server@<name>".
  instanceDropins = lib.filterAttrs (_: text: text != "") (
    lib.mapAttrs (
      _: inst:
      lib.optionalString (inst.serviceConfig != { } || inst.environment != { }) (
        ''
          # services.left4me.instances.<name>.environment and .serviceConfig
          [Service]
        ''
        + environmentLines inst.environment
        + utils.systemdUtils.lib.attrsToSection inst.serviceConfig
      )
    ) cfg.instances
  );

  # Every rendered unit (common.unitNames, derived from dist/) comes from a
  # package (systemd.packages), so it reaches systemd exactly as rendered;
  # everything NixOS adds is a drop-in next to it, as nixos-containers.nix
  # does for container@.
  #
  # left4me-enable@/left4me-disable@ cannot do their job here (`systemctl
  # enable` cannot write NixOS's read-only /etc/systemd/system; declare
  # services.left4me.instances.<name>.autoStart instead), but they are
  # installed anyway, as dist/ defines them: the request server's `enable`
  # and `disable` start them, and the service user's request then fails
  # with the unit's own message (an autoStart instance's link exists, so
  # its enable succeeds) instead of "unit not found". The health template
  # is masked, not left out, when health.enable is false: the server
  # template's Wants= (which no drop-in can reset) then names a unit that
  # is there and never starts, and a start by hand says "masked".
  mountNames = filter (lib.hasSuffix ".mount") unitNames;
  masked = lib.optional (!cfg.health.enable) "left4me-health@.service";
  # passAsFile exposes attribute A as the file named by $APath, so the
  # attribute must be a shell variable name: the unit name's hash.
  attrOf = name: "unit${builtins.substring 0 16 (builtins.hashString "sha256" name)}";
  units =
    pkgs.runCommand "left4me-systemd-units"
      (
        {
          passAsFile = map attrOf unitNames;
        }
        // lib.listToAttrs (
          map (name: {
            name = attrOf name;
            value = rendered.${name};
          }) unitNames
        )
      )
      (
        ''
          dir="$out/lib/systemd/system"
          mkdir -p "$dir"
        ''
        + concatStringsSep "" (
          map (
            name:
            if builtins.elem name masked then
              ''
                ln -s /dev/null "$dir/${name}"
              ''
            else
              ''
                cp "''$${attrOf name}Path" "$dir/${name}"
              ''
          ) unitNames
        )
        + concatStringsSep "" (
          mapAttrsToList (name: text: ''
            mkdir -p "$dir/left4me-server@${name}.service.d"
            cp ${pkgs.writeText "left4me-server-${name}-dropin" text} "$dir/left4me-server@${name}.service.d/${instanceDropinName}"
          '') instanceDropins
        )
      );

  # dist/left4me.tmpfiles.in as systemd.tmpfiles.settings. Only the plain
  # whitespace-separated form is understood; anything else (quoting,
  # escapes) stops evaluation rather than being half-parsed.
  tmpfilesToSettings =
    text:
    let
      isRule = line: builtins.match "[[:space:]]*(#.*)?" line == null;
      fieldsOf = line: filter (f: builtins.isString f && f != "") (builtins.split "[[:space:]]+" line);
      parse =
        line:
        let
          fields = fieldsOf line;
          field = i: if builtins.length fields > i then builtins.elemAt fields i else "-";
          argument = concatStringsSep " " (lib.drop 6 fields);
        in
        if builtins.any (f: matches ".*[\"'\\\\].*" f) fields then
          throw "services.left4me: cannot translate tmpfiles line with quotes or escapes: ${line}"
        else
          {
            ${field 1}.${field 0} = {
              mode = field 2;
              user = field 3;
              group = field 4;
              age = field 5;
              argument = if argument == "-" then "" else argument;
            };
          };
    in
    lib.foldl' lib.recursiveUpdate { } (map parse (filter isRule (lib.splitString "\n" text)));

  # dist/host.env.in's comments are written for Debian's conffile (edit and
  # uncomment lines, Debian's glibc and steamcmd package); here the file is
  # generated and read-only, so only its assignments are kept, under a
  # header saying where they come from and what to change instead.
  hostEnvAssignments = filter (line: matches "[A-Za-z_][A-Za-z0-9_]*=.*" line) (
    lib.splitString "\n" rendered."host.env"
  );
  section = title: lines: "\n# ${title}\n" + concatStringsSep "" (map (line: "${line}\n") lines);
  hostEnv =
    concatStringsSep "\n" [
      "# /etc/left4me/host.env: host-wide settings of left4me, generated by the"
      "# NixOS module services.left4me (docs/nixos.md). Read-only: change"
      "# services.left4me.hostSettings, .health and .update instead; later"
      "# lines win. Read by left4me-server@.service (EnvironmentFile=) before the"
      "# helper's copy of an instance's instance.env, whose L4D2_* win over these."
      ""
      "# Defaults (dist/host.env.in)"
    ]
    + "\n"
    + concatStringsSep "" (map (line: "${line}\n") hostEnvAssignments)
    + section "services.left4me.health" (healthLines cfg.health)
    + section "services.left4me.update" [
      "LEFT4ME_UPDATE_RESTART=${cfg.update.restart}"
      "LEFT4ME_UPDATE_KEEP=${toString cfg.update.keep}"
      "LEFT4ME_UPDATE_COPY=${cfg.update.copy}"
      "LEFT4ME_STEAM_LOGIN=${cfg.update.login}"
    ]
    + lib.optionalString (cfg.hostSettings != { }) (
      section "services.left4me.hostSettings" (mapAttrsToList (k: v: "${k}=${quote v}") cfg.hostSettings)
    );

  i686Glibc = builtins.head cfg.i686Runtime.libraries;
in
{
  config = mkIf cfg.enable (mkMerge [
    {
      # Only the man page: the helper is run by systemd, not from PATH
      # (docs/nixos.md says how to add the admin command `left4me`).
      environment.systemPackages = [
        (pkgs.runCommand "left4me-man" { } ''
          mkdir -p "$out/share"
          if [ -d "${cfg.package}/share/man" ]; then
            ln -s "${cfg.package}/share/man" "$out/share/man"
          fi
        '')
      ];
      environment.etc."left4me/host.env".text = hostEnv;

      systemd.packages = [ units ];

      # Restarting an active overlay unit would stop its game (BindsTo=)
      # and remount under the players' feet.
      systemd.services."left4me-overlay@" = {
        overrideStrategy = "asDropin";
        restartIfChanged = mkDefault false;
      };
      systemd.services."left4me-reset@".overrideStrategy = "asDropin";

      systemd.services."left4me-server@" = {
        overrideStrategy = "asDropin";
        # A switch must not kick players off running servers (Debian's
        # upgrades do not either); changes apply at the next restart.
        restartIfChanged = mkDefault false;
        # srcds_run is a shell script (dirname, ulimit); the NixOS default
        # path of every service supplies coreutils for it.
        serviceConfig =
          optionalAttrs (cfg.resources.memoryMax != null) { MemoryMax = cfg.resources.memoryMax; }
          // optionalAttrs (cfg.resources.tasksMax != null) { TasksMax = cfg.resources.tasksMax; }
          // optionalAttrs cfg.i686Runtime.enable {
            # Only inside the game's mount namespace. A bind mount onto a
            # missing path makes systemd create that path on the host (an
            # empty /lib/ld-linux.so.2 would break every host i686 binary),
            # so the binds go into read-only tmpfs over /lib and /bin
            # (NixOS's /bin holds only sh, bound again from bash).
            TemporaryFileSystem = [
              "/lib:ro"
              "/bin:ro"
            ];
            BindReadOnlyPaths = [
              "${i686Glibc}/lib/ld-linux.so.2:/lib/ld-linux.so.2"
              "${pkgs.bash}/bin/bash:/bin/bash"
              "${pkgs.bash}/bin/bash:/bin/sh"
            ];
          };
        # srcds_run prepends its own bin/ to LD_LIBRARY_PATH, so Valve's
        # libraries still come first.
        environment = optionalAttrs cfg.i686Runtime.enable {
          LD_LIBRARY_PATH = lib.makeLibraryPath cfg.i686Runtime.libraries;
        };
      };

      systemd.slices.l4d2-game = mkIf (cfg.resources.cpuWeight != null) {
        overrideStrategy = "asDropin";
        sliceConfig.CPUWeight = cfg.resources.cpuWeight;
      };

      systemd.tmpfiles.settings."10-left4me" = tmpfilesToSettings rendered."left4me.tmpfiles";

      # The capped tmpfs mounts (dist/run-left4me*.mount.in) have no
      # [Install] section: local-fs.target wants them, as the .deb's shipped
      # link does, so they are mounted at boot before tmpfiles runs, whose
      # line for /run/left4me-metrics then sets that tmpfs root's owner and
      # mode (root, the health checks' own group left4me-health, 0775). A switch
      # re-applies tmpfiles when its rules change
      # (systemd-tmpfiles-resetup): after the mounts, which it pulls in, so
      # a first switch owns them as a boot does.
      systemd.units = lib.genAttrs mountNames (_: {
        overrideStrategy = "asDropin";
        wantedBy = [ "local-fs.target" ];
      });

      # The request socket (dist/left4me-requests.socket.in): the service
      # user's and the group's only way to a job of a left4me unit (nothing
      # grants them one through polkit). NixOS ignores a packaged unit's
      # [Install] section, so its WantedBy=sockets.target is repeated here
      # (a drop-in and the sockets.target.wants link, as `systemctl enable`
      # makes on Debian): listening from boot, before the health checks and
      # the web app ask. The server (left4me-requests.service) is started
      # by the socket only.
      systemd.sockets.left4me-requests = {
        overrideStrategy = "asDropin";
        wantedBy = [ "sockets.target" ];
      };
      systemd.services.systemd-tmpfiles-resetup = {
        overrideStrategy = "asDropin";
        wants = mountNames;
        after = mountNames;
      };
    }

    (mkIf (cfg.user == "left4me") {
      users.users.left4me = {
        isSystemUser = true;
        inherit (cfg) group;
        # Not the state dir (Debian's home): with systemd.sysusers.enable,
        # NixOS turns a home into a tmpfiles `d` line, which would collide
        # with the layout's own line for the state dir ("Duplicate line" at
        # every boot, the winner decided by file name order). Nothing needs
        # a home: the game sees neither it nor the state dir's root.
        home = "/var/empty";
        description = "left4me game servers";
      };
    })

    (mkIf (cfg.group == "left4me") { users.groups.left4me = { }; })

    # The health checks' own user and group (dist/left4me.sysusers.in), the
    # only ones that may write their records and the metrics directory
    # (dist/left4me.tmpfiles.in, dist/left4me-health@.service.in).
    {
      users.users.${healthUser} = {
        isSystemUser = true;
        group = healthUser;
        description = "left4me health checks";
      };
      users.groups.${healthUser} = { };
    }
  ]);
}
