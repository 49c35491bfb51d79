# services.left4me: the host side of left4me on NixOS.
#
# Everything systemd, tmpfiles and polkit see is rendered from the canonical
# dist/*.in through ./render.nix, the same sources Debian's package is built
# from; this module only adds what NixOS manages declaratively (users,
# firewall, declared instances) and drop-ins for the tunables it exposes.
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
    literalExpression
    mapAttrs'
    mapAttrsToList
    mkDefault
    mkIf
    mkMerge
    mkOption
    nameValuePair
    optional
    optionalAttrs
    types
    ;

  cfg = config.services.left4me;

  # The helper's name rules (src/, CONVENTIONS.md); checked here so a typo
  # fails at evaluation instead of at the first start (exit 10).
  instanceNamePattern = "[A-Za-z0-9][A-Za-z0-9_-]{0,31}";
  overlayNamePattern = "[A-Za-z0-9][A-Za-z0-9_-]{0,63}";
  # instance.env and host.env are read by systemd (EnvironmentFile=) and by
  # the helper, which accepts a strict subset of that syntax: values are
  # written double-quoted, so they must not need escaping.
  envKeyPattern = "[A-Za-z_][A-Za-z0-9_]*";
  envValuePattern = "[^\"\\\\$`\n]*";
  # srcds receives $L4D2_ARGS split at whitespace, so one list element must
  # be one word.
  argPattern = "[^\"\\\\$`'[:space:]]+";

  matches = pattern: s: builtins.match pattern s != null;

  helperPath = "${cfg.package}/libexec/left4me/left4me-overlay";

  rendered = import ./render.nix {
    helper = helperPath;
    inherit (cfg) stateDir user group;
  };

  # The template unit and the slice come from a package (systemd.packages),
  # so they reach systemd exactly as rendered; everything NixOS adds is a
  # drop-in next to them, as nixos-containers.nix does for container@.
  units =
    pkgs.runCommand "left4me-systemd-units"
      {
        unit = rendered."left4me-server@.service";
        slice = rendered."l4d2-game.slice";
        # A dash in a slice name nests it: l4d2-game.slice lives in l4d2.slice,
        # which carries the weights against its siblings.
        parentSlice = rendered."l4d2.slice";
        passAsFile = [
          "unit"
          "slice"
          "parentSlice"
        ];
      }
      # left4me-enable@/left4me-disable@ are not installed: `systemctl enable`
      # cannot write NixOS's read-only /etc/systemd/system; declare
      # services.left4me.instances.<name>.enable instead.
      ''
        mkdir -p "$out/lib/systemd/system"
        cp "$unitPath" "$out/lib/systemd/system/left4me-server@.service"
        cp "$slicePath" "$out/lib/systemd/system/l4d2-game.slice"
        cp "$parentSlicePath" "$out/lib/systemd/system/l4d2.slice"
      '';

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

  quote = v: "\"${v}\"";

  instanceEnv =
    name: inst:
    concatStringsSep "\n" (
      [
        "# Declared in the NixOS configuration (services.left4me.instances.${name});"
        "# root-owned on purpose: change it there, not here."
        "L4D2_PORT=${toString inst.port}"
        "L4D2_OVERLAYS=${quote (concatStringsSep " " inst.overlays)}"
      ]
      ++ optional (inst.args != null) "L4D2_ARGS=${quote (concatStringsSep " " inst.args)}"
      ++ mapAttrsToList (k: v: "${k}=${quote v}") inst.environment
    )
    + "\n";

  hostEnv =
    rendered."host.env"
    + lib.optionalString (cfg.hostSettings != { }) (
      "\n# services.left4me.hostSettings (later lines win over the defaults above)\n"
      + concatStringsSep "" (mapAttrsToList (k: v: "${k}=${quote v}\n") cfg.hostSettings)
    );

  reservedInstanceKeys = [
    "L4D2_PORT"
    "L4D2_ARGS"
    "L4D2_OVERLAYS"
  ];
  reservedHostKeys = [
    "LEFT4ME_USER"
    "LEFT4ME_GROUP"
    "LEFT4ME_STATE_DIR"
  ];

  firewallPorts = mapAttrsToList (_: inst: inst.port) (
    filterAttrs (_: inst: inst.openFirewall) cfg.instances
  );

  portOwners = lib.groupBy (name: toString cfg.instances.${name}.port) (
    builtins.attrNames cfg.instances
  );
  duplicatePorts = filterAttrs (_: names: builtins.length names > 1) portOwners;

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
      {
        assertion = inst.args == null || builtins.all (matches argPattern) inst.args;
        message = "services.left4me.instances.\"${name}\".args: each element must be one non-empty word without whitespace, quotes, backslash, $ or `.";
      }
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
        assertion = builtins.all (matches envValuePattern) (builtins.attrValues inst.environment);
        message = "services.left4me.instances.\"${name}\".environment: values must not contain a double quote, backslash, $, ` or newline.";
      }
    ]) cfg.instances
  );

  instanceOptions =
    { name, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
          example = false;
          description = ''
            Whether to start `left4me-server@${name}.service` at boot
            (`wantedBy = [ "multi-user.target" ]`). A disabled instance is
            still configured and can be started by hand or by the web app.
          '';
        };
        port = mkOption {
          type = types.port;
          default = 27015;
          example = 27016;
          description = "UDP/TCP game port (`L4D2_PORT`). Every instance needs its own.";
        };
        args = mkOption {
          type = types.nullOr (types.listOf types.str);
          default = null;
          example = [
            "+map"
            "c1m1_hotel"
            "-nohltv"
          ];
          description = ''
            Extra srcds arguments (`L4D2_ARGS`), one word per element.
            `null` keeps the host default `L4D2_ARGS` from
            {file}`/etc/left4me/host.env` (see {option}`services.left4me.hostSettings`).
          '';
        };
        overlays = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "sourcemod"
            "confogl"
          ];
          description = ''
            Shared layers from {file}`''${stateDir}/overlays/` stacked on the
            installation (`L4D2_OVERLAYS`); the first has the highest priority.
          '';
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          example = {
            TZ = "Europe/Berlin";
          };
          description = ''
            Further variables written to this instance's
            {file}`instance.env`, visible to srcds.
          '';
        };
        openFirewall = mkOption {
          type = types.bool;
          default = cfg.openFirewall;
          defaultText = literalExpression "config.services.left4me.openFirewall";
          example = true;
          description = ''
            Whether to open this instance's {option}`port` for UDP (game
            traffic and server queries) in the firewall. TCP (RCON) stays closed.
          '';
        };
      };
    };
in
{
  options.services.left4me = {
    enable = mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = ''
        Whether to set up left4me: the `left4me-server@.service` template,
        `l4d2-game.slice`, the service user, the state directory layout,
        the polkit rule for the service user and the declared instances.
      '';
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = literalExpression "pkgs.callPackage ./package.nix { } # this flake's packages.default";
      example = literalExpression "inputs.left4me.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = "The left4me package providing {file}`libexec/left4me/left4me-overlay`.";
    };

    stateDir = mkOption {
      type = types.strMatching "/[A-Za-z0-9._/-]*[A-Za-z0-9._-]";
      default = "/var/lib/left4me";
      example = "/srv/left4me";
      description = ''
        State directory holding {file}`installation/`, {file}`overlays/`,
        {file}`instances/` and {file}`runtime/`. Absolute, without a trailing
        slash, and only of characters that need no escaping in unit files.
      '';
    };

    user = mkOption {
      type = types.strMatching "[a-z_][a-z0-9_-]*";
      default = "left4me";
      example = "l4d2";
      description = ''
        Service user that runs srcds and owns the writable layers. The module
        creates it when it is left at the default; otherwise declare it yourself.
      '';
    };

    group = mkOption {
      type = types.strMatching "[a-z_][a-z0-9_-]*";
      default = "left4me";
      example = "l4d2";
      description = ''
        Group of the service user; members may create instances under
        {file}`''${stateDir}/instances/`. Created by the module at the default.
      '';
    };

    hostSettings = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        L4D2_ARGS = "-nohltv +sv_lan 0 +map c2m1_highway";
        TZ = "UTC";
      };
      description = ''
        Variables appended to {file}`/etc/left4me/host.env` after the
        canonical defaults (so these win). Read by every instance before its
        own {file}`instance.env`. `LEFT4ME_USER`, `LEFT4ME_GROUP` and
        `LEFT4ME_STATE_DIR` follow {option}`user`, {option}`group` and
        {option}`stateDir` and cannot be set here.
      '';
    };

    resources = {
      cpuWeight = mkOption {
        type = types.nullOr (types.ints.between 1 10000);
        default = null;
        example = 1000;
        description = ''
          `CPUWeight=` of {file}`l4d2-game.slice`, shared by all instances.
          `null` keeps the canonical value from {file}`dist/l4d2-game.slice.in` (500).
        '';
      };
      memoryHigh = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "3G";
        description = ''
          `MemoryHigh=` of every instance. `null` keeps the canonical value
          from {file}`dist/left4me-server@.service.in` (1.5G).
        '';
      };
      memoryMax = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "4G";
        description = ''
          `MemoryMax=` of every instance. `null` keeps the canonical value (2G).
        '';
      };
      tasksMax = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        example = 512;
        description = ''
          `TasksMax=` of every instance. `null` keeps the canonical value (256).
        '';
      };
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = "Default of {option}`instances.<name>.openFirewall` for every declared instance.";
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceOptions);
      default = { };
      example = literalExpression ''
        {
          vs1 = { port = 27015; overlays = [ "sourcemod" "confogl" ]; args = [ "+map" "c1m1_hotel" ]; };
          coop = { port = 27016; openFirewall = true; };
        }
      '';
      description = ''
        Instances declared here get a root-owned
        {file}`''${stateDir}/instances/<name>/instance.env` the service user
        cannot change, and (when enabled) start at boot. Instances the web
        app creates at run time live beside them and are not touched.
      '';
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = instanceAssertions ++ [
        {
          assertion = duplicatePorts == { };
          message = "services.left4me.instances: each instance needs its own port; shared: ${
            concatStringsSep "; " (
              mapAttrsToList (port: names: "${port} by ${concatMapStringsSep ", " quote names}") duplicatePorts
            )
          }.";
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
          assertion =
            !builtins.any (k: builtins.elem k reservedHostKeys) (builtins.attrNames cfg.hostSettings);
          message = "services.left4me.hostSettings: LEFT4ME_USER, LEFT4ME_GROUP and LEFT4ME_STATE_DIR follow services.left4me.user, .group and .stateDir.";
        }
      ];

      # Only the man page: the helper is run by systemd, not from PATH, and
      # the package's own polkit rule (rendered for the defaults) must not
      # become active through /run/current-system/sw/share/polkit-1.
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

      systemd.services."left4me-server@" = {
        overrideStrategy = "asDropin";
        # A switch must not kick players off running servers (Debian's
        # upgrades do not either); changes apply at the next restart.
        restartIfChanged = mkDefault false;
        # srcds_run is a shell script (dirname, ulimit); the NixOS default
        # path of every service supplies coreutils for it.
        serviceConfig =
          optionalAttrs (cfg.resources.memoryHigh != null) { MemoryHigh = cfg.resources.memoryHigh; }
          // optionalAttrs (cfg.resources.memoryMax != null) { MemoryMax = cfg.resources.memoryMax; }
          // optionalAttrs (cfg.resources.tasksMax != null) { TasksMax = cfg.resources.tasksMax; };
      };

      systemd.slices.l4d2-game = mkIf (cfg.resources.cpuWeight != null) {
        overrideStrategy = "asDropin";
        sliceConfig.CPUWeight = cfg.resources.cpuWeight;
      };

      systemd.tmpfiles.settings."10-left4me" = tmpfilesToSettings rendered."left4me.tmpfiles";

      # The rule file is JavaScript for polkitd; NixOS collects it here.
      security.polkit.enable = mkDefault true;
      security.polkit.extraConfig = rendered."left4me.rules";

      networking.firewall.allowedUDPPorts = firewallPorts;
    }

    (mkIf (cfg.user == "left4me") {
      users.users.left4me = {
        isSystemUser = true;
        inherit (cfg) group;
        home = cfg.stateDir;
        description = "left4me game servers";
      };
    })

    (mkIf (cfg.group == "left4me") { users.groups.left4me = { }; })

    {
      # Declared instances: root-owned directory and instance.env, written by
      # systemd-tmpfiles (boot and every switch), which refuses to follow
      # symlinks the service user might plant. instances/ is root-owned and
      # sticky, so the service user can neither rename nor replace them.
      systemd.tmpfiles.settings."20-left4me-instances" = lib.mkMerge (
        mapAttrsToList (name: inst: {
          "${cfg.stateDir}/instances/${name}".d = {
            mode = "0755";
            user = "root";
            group = "root";
          };
          # 0640: srcds arguments may carry rcon or server passwords; the
          # web app (group) may read them, other local users may not.
          "${cfg.stateDir}/instances/${name}/instance.env"."f+" = {
            mode = "0640";
            user = "root";
            inherit (cfg) group;
            argument = instanceEnv name inst;
          };
        }) cfg.instances
      );

      systemd.services = mapAttrs' (
        name: inst:
        nameValuePair "left4me-server@${name}" {
          overrideStrategy = "asDropin";
          wantedBy = optional inst.enable "multi-user.target";
          restartIfChanged = mkDefault false;
        }
      ) cfg.instances;
    }
  ]);
}
