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
  utils,
  ...
}:
let
  inherit (lib)
    concatMapStringsSep
    concatStringsSep
    filter
    filterAttrs
    literalExpression
    mapAttrsToList
    mkDefault
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    mkRenamedOptionModule
    optional
    optionalAttrs
    types
    ;

  cfg = config.services.left4me;

  # The helper's name rules (src/name.rs; README "Contract"); checked here
  # so a typo fails at evaluation instead of at the first start (exit 10).
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

  # Fixed, as on Debian: docs/updates.md names it, and the helper refuses
  # root and the service user as the owner of installations/.next/.
  updateUser = "left4me-update";

  # steamcmd is unfree. The update unit is installed either way (the polkit
  # rule names it, so it must exist; see the enable@ comment in `units`), but
  # only update.enable brings steamcmd into the closure: without it the unit
  # runs this instead, and a host that never allowed unfree packages still
  # evaluates. It fails after `generation prepare`, and ExecStopPost's
  # `generation abort` discards .next/ again.
  updateDisabled = pkgs.writeShellScript "left4me-update-disabled" ''
    echo "left4me-update: services.left4me.update.enable is false in this NixOS configuration, so there is no steamcmd to run. Set it (nixpkgs' steamcmd is unfree: allow it, docs/nixos.md), or install the game by hand: left4me-overlay generation import DIR." >&2
    exit 1
  '';
  steamcmdPath =
    if cfg.update.enable then
      lib.getExe' cfg.update.steamcmd.package "steamcmd"
    else
      "${updateDisabled}";

  rendered = import ./render.nix {
    helper = helperPath;
    health = "${cfg.package}/bin/left4me-health";
    systemctl = "${config.systemd.package}/bin/systemctl";
    steamcmd = steamcmdPath;
    inherit (cfg) stateDir user group;
    inherit updateUser;
  };

  # docs/updates.md: host-wide, read by the helper's generation commands
  # (defaults of --restart, --keep, --copy) and by the health check
  # (LEFT4ME_UPDATE_RESTART=when-empty).
  updateLines = [
    "LEFT4ME_UPDATE_RESTART=${cfg.update.restart}"
    "LEFT4ME_UPDATE_KEEP=${toString cfg.update.keep}"
    "LEFT4ME_UPDATE_COPY=${cfg.update.copy}"
  ];

  # The health check's settings (docs/health.md) and the L4D2_HEALTH_* key
  # each one is written as: host-wide into host.env, per instance into that
  # instance's instance.env, which the helper's copy passes on (L4D2_* keys).
  healthKeys = {
    graceSec = "L4D2_HEALTH_GRACE_SEC";
    intervalSec = "L4D2_HEALTH_INTERVAL_SEC";
    timeoutSec = "L4D2_HEALTH_TIMEOUT_SEC";
    failures = "L4D2_HEALTH_FAILURES";
    restartsMax = "L4D2_HEALTH_RESTARTS_MAX";
    restartsWindowSec = "L4D2_HEALTH_RESTARTS_WINDOW_SEC";
  };
  # The binary reads digits with an optional fraction only; Nix prints a
  # float with six decimals, which it accepts.
  healthLines =
    settings:
    lib.concatLists (
      mapAttrsToList (
        option: key: optional (settings.${option} != null) "${key}=${toString settings.${option}}"
      ) healthKeys
    );
  isHealthKey = k: lib.hasPrefix "L4D2_HEALTH_" k;

  # One set of options, used host-wide (defaults: the binary's) and per
  # instance (default null: the host's value).
  healthOptions =
    { perInstance }:
    let
      setting =
        type: default: description:
        mkOption {
          type = if perInstance then types.nullOr type else type;
          default = if perInstance then null else default;
          example = default * 2;
          description =
            description + lib.optionalString perInstance " `null`: {option}`services.left4me.health` decides.";
        };
    in
    {
      graceSec =
        setting types.numbers.nonnegative 120
          "Seconds after the server's start before the first query (the game loads a map first).";
      intervalSec = setting types.numbers.positive 10 "Seconds from one A2S_INFO query to the next.";
      timeoutSec =
        setting types.numbers.positive 2
          "Seconds without an answer after which a query failed.";
      failures =
        setting (types.ints.between 1 1000) 3
          "Failed queries in a row that restart the server (one lost datagram is one failure).";
      restartsMax =
        setting (types.ints.between 0 1000) 3
          "Restarts by the health check within {option}`restartsWindowSec`; one more would be due, the check ends the server as `failed` instead (0: at the first hang).";
      restartsWindowSec =
        setting types.numbers.positive 3600
          "The window of that restart budget, in seconds.";
    };

  # A declared instance's own settings. NixOS names every drop-in it makes
  # from systemd.services.<name> "overrides.conf", and systemd loads only one
  # file per name across left4me-server@.service.d/ and
  # left4me-server@<name>.service.d/: an instance's overrides.conf would hide
  # the template's (resources.*, the i686 runtime, every user override). So the
  # module never defines systemd.services."left4me-server@<name>"; an
  # instance's settings go into a file of their own, named to sort after
  # overrides.conf so that the instance wins over the template.
  instanceDropinName = "zz-left4me-instance.conf";
  # Environment= lines as NixOS writes them for systemd.services.<n>.environment;
  # `%` doubled, since systemd expands specifiers in unit files.
  environmentLines =
    env:
    concatStringsSep "" (
      mapAttrsToList (
        k: v: "Environment=${builtins.toJSON "${k}=${lib.replaceStrings [ "%" ] [ "%%" ] v}"}\n"
      ) env
    );
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

  # The template unit and the slice come from a package (systemd.packages),
  # so they reach systemd exactly as rendered; everything NixOS adds is a
  # drop-in next to them, as nixos-containers.nix does for container@.
  units =
    pkgs.runCommand "left4me-systemd-units"
      {
        unit = rendered."left4me-server@.service";
        overlayUnit = rendered."left4me-overlay@.service";
        resetUnit = rendered."left4me-reset@.service";
        healthUnit = rendered."left4me-health@.service";
        updateUnit = rendered."left4me-update.service";
        updateTimer = rendered."left4me-update.timer";
        updateNowUnit = rendered."left4me-update-now.service";
        enableUnit = rendered."left4me-enable@.service";
        disableUnit = rendered."left4me-disable@.service";
        slice = rendered."l4d2-game.slice";
        # A dash in a slice name nests it: l4d2-game.slice lives in l4d2.slice,
        # which carries the weights against its siblings.
        parentSlice = rendered."l4d2.slice";
        passAsFile = [
          "unit"
          "overlayUnit"
          "resetUnit"
          "healthUnit"
          "updateUnit"
          "updateTimer"
          "updateNowUnit"
          "enableUnit"
          "disableUnit"
          "slice"
          "parentSlice"
        ];
      }
      # left4me-enable@/left4me-disable@ cannot do their job here (`systemctl
      # enable` cannot write NixOS's read-only /etc/systemd/system; declare
      # services.left4me.instances.<name>.autoStart instead), but they are
      # installed anyway: the polkit rule lets the service user start units of
      # those names, and since systemd 257 polkit also decides transient units
      # by their name, so a name without a unit file would let the user
      # `systemd-run --unit=left4me-enable@x.service` any command as root.
      # With the template installed, systemd refuses a transient unit of that
      # name.
      (
        ''
          dir="$out/lib/systemd/system"
          mkdir -p "$dir"
          cp "$unitPath" "$dir/left4me-server@.service"
          cp "$overlayUnitPath" "$dir/left4me-overlay@.service"
          cp "$resetUnitPath" "$dir/left4me-reset@.service"
          cp "$healthUnitPath" "$dir/left4me-health@.service"
          cp "$updateUnitPath" "$dir/left4me-update.service"
          cp "$updateTimerPath" "$dir/left4me-update.timer"
          cp "$updateNowUnitPath" "$dir/left4me-update-now.service"
          cp "$enableUnitPath" "$dir/left4me-enable@.service"
          cp "$disableUnitPath" "$dir/left4me-disable@.service"
          cp "$slicePath" "$dir/l4d2-game.slice"
          cp "$parentSlicePath" "$dir/l4d2.slice"
        ''
        + concatStringsSep "" (
          mapAttrsToList (name: text: ''
            mkdir -p "$dir/left4me-server@${name}.service.d"
            cp ${pkgs.writeText "left4me-server-${name}-dropin" text} "$dir/left4me-server@${name}.service.d/${instanceDropinName}"
          '') instanceDropins
        )
      );

  # Removing an instance from the configuration removes its drop-in, but its
  # root-owned instance.env (written by tmpfiles, which never deletes what it
  # no longer declares) would keep it startable with the old settings, and
  # the service user cannot delete it. This deletes exactly the files the
  # module wrote: root-owned, in a root-owned instance dir, starting with the
  # header instanceEnv writes. Everything else stays (docs/nixos.md).
  pruneRemovedInstances = pkgs.writeShellScript "left4me-prune-removed-instances" ''
    set -eu
    state=$1
    shift
    for dir in "$state"/instances/*; do
      name=''${dir##*/}
      [ -d "$dir" ] && [ ! -L "$dir" ] || continue
      for declared in "$@"; do
        [ "$declared" != "$name" ] || continue 2
      done
      env=$dir/instance.env
      [ -f "$env" ] && [ ! -L "$env" ] || continue
      [ "$(stat -c %u "$dir")" = 0 ] && [ "$(stat -c %u "$env")" = 0 ] || continue
      IFS= read -r first < "$env" || continue
      [ "$first" = "${instanceEnvHeader "$name"}" ] || continue
      rm -- "$env"
      echo "left4me: instance $name is no longer declared: removed $env; $dir and $state/runtime/$name are kept"
    done
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

  instanceEnvHeader =
    name: "# Declared in the NixOS configuration (services.left4me.instances.${name});";
  instanceEnv =
    name: inst:
    concatStringsSep "\n" (
      [
        (instanceEnvHeader name)
        "# root-owned on purpose: change it there, not here."
        "L4D2_PORT=${toString inst.port}"
        "L4D2_OVERLAYS=${quote (concatStringsSep " " inst.overlays)}"
      ]
      ++ optional (inst.args != null) "L4D2_ARGS=${quote (concatStringsSep " " inst.args)}"
      ++ healthLines inst.health
    )
    + "\n";

  hostEnv =
    rendered."host.env"
    + "\n# services.left4me.health\n"
    + concatStringsSep "" (map (line: "${line}\n") (healthLines cfg.health))
    + "\n# services.left4me.update\n"
    + concatStringsSep "" (map (line: "${line}\n") updateLines)
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
  updateHostKeys = [
    "LEFT4ME_UPDATE_RESTART"
    "LEFT4ME_UPDATE_KEEP"
    "LEFT4ME_UPDATE_COPY"
    "LEFT4ME_STEAMCMD"
  ];

  i686Glibc = builtins.head cfg.i686Runtime.libraries;

  perInstanceServices = filter (
    unit: builtins.match "left4me-(server|overlay|reset|health)@.+" unit != null
  ) (builtins.attrNames config.systemd.services);

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

  instanceOptions =
    { name, ... }:
    {
      # `enable` read like NixOS's systemd.services.<name>.enable (whether
      # the unit exists at all), which is not what it did.
      imports = [ (mkRenamedOptionModule [ "enable" ] [ "autoStart" ]) ];
      options = {
        autoStart = mkOption {
          type = types.bool;
          default = true;
          example = false;
          description = ''
            Whether to start `left4me-server@${name}.service` at boot
            (`multi-user.target` wants it). An instance that does not start at
            boot is still configured and can be started by hand or by the web app.
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
            game's current generation (`L4D2_OVERLAYS`); the first has the highest priority.
          '';
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          example = {
            TZ = "Europe/Berlin";
          };
          description = ''
            Further variables in srcds' environment, for this instance only:
            `Environment=` lines in
            {file}`left4me-server@${name}.service.d/${instanceDropinName}`
            (root-owned unit configuration; {file}`instance.env` carries
            only the `L4D2_*` keys the helper accepts). A key may not also be
            in {option}`hostSettings`: {file}`host.env` is an
            `EnvironmentFile=` and would win over it.
          '';
        };
        serviceConfig = mkOption {
          type = types.attrsOf utils.systemdUtils.unitOptions.unitOption;
          default = { };
          example = {
            MemoryMax = "6G";
            Nice = -10;
          };
          description = ''
            `[Service]` settings for this instance only, in
            {file}`left4me-server@${name}.service.d/${instanceDropinName}`,
            which systemd reads after the template's drop-ins, so these win.
            The module refuses `systemd.services."left4me-server@${name}"`:
            NixOS would write it as a unit file replacing the template, or as
            an {file}`overrides.conf` hiding the template's.
          '';
        };
        health = healthOptions { perInstance = true; };
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
    enable = mkEnableOption ''
      left4me: the `left4me-server@.service` template, `l4d2-game.slice`,
      the service user, the state directory layout, the polkit rule for the
      service user and the declared instances'';

    i686Runtime = {
      enable = mkOption {
        type = types.bool;
        default = pkgs.stdenv.hostPlatform.isx86_64;
        defaultText = literalExpression "pkgs.stdenv.hostPlatform.isx86_64";
        example = false;
        description = ''
          Whether to make what Valve's `srcds_run` and the 32-bit
          `srcds_linux` expect of a Linux distribution visible inside the
          game's sandbox, and only there: {file}`/lib/ld-linux.so.2` (the
          i686 glibc loader), the libraries of {option}`i686Runtime.libraries`
          on `LD_LIBRARY_PATH`, and {file}`/bin/bash`. NixOS has none of them,
          and steam-run's bubblewrap cannot work under the unit's
          `RestrictNamespaces=yes`. Turn it off if the game brings its own.
        '';
      };
      libraries = mkOption {
        type = types.listOf types.package;
        default = [
          pkgs.pkgsi686Linux.glibc
          pkgs.pkgsi686Linux.stdenv.cc.cc.lib
        ];
        defaultText = literalExpression "[ pkgs.pkgsi686Linux.glibc pkgs.pkgsi686Linux.stdenv.cc.cc.lib ]";
        example = literalExpression "[ pkgs.pkgsi686Linux.glibc pkgs.pkgsi686Linux.stdenv.cc.cc.lib pkgs.pkgsi686Linux.zlib ]";
        description = ''
          i686 packages whose {file}`lib/` goes on the game's
          `LD_LIBRARY_PATH` (glibc, libstdc++ and libgcc_s by default; add
          what plugins need). The first must be glibc: its
          {file}`lib/ld-linux.so.2` becomes {file}`/lib/ld-linux.so.2`.
        '';
      };
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
        State directory holding {file}`installations/`, {file}`overlays/`,
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

    # left4me-health@<name>.service, started with every server
    # (docs/health.md); written into /etc/left4me/host.env.
    health = healthOptions { perInstance = false; };

    # Game updates (docs/updates.md): left4me-update.service and its timer,
    # rendered from dist/ like every unit, are installed whatever these say.
    update = {
      enable = mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = ''
          Whether `left4me-update.service` runs {option}`steamcmd.package`
          to build the next installation generation. nixpkgs' `steamcmd` is
          unfree: allow it, e.g.
          `nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) [ "steamcmd" "steam-unwrapped" ];`
          (its `steam-run` needs `steam-unwrapped`). The unit and its timer
          are installed either way, as on Debian; while this is `false`,
          nothing refers to steamcmd (a host that installs the game with
          `left4me-overlay generation import` needs no unfree package) and
          the unit fails saying so.
        '';
      };
      timer = {
        enable = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = ''
            Whether `timers.target` wants `left4me-update.timer`, so updates
            run on {option}`timer.onCalendar`. Off by default, as on Debian:
            `systemctl start left4me-update` runs one by hand.
          '';
        };
        onCalendar = mkOption {
          type = types.strMatching "[^\n]+";
          default = "*-*-* 04:00:00";
          example = "Mon *-*-* 05:30:00";
          description = ''
            `OnCalendar=` of `left4me-update.timer` (replacing the canonical
            one; its `RandomizedDelaySec=4h` stays). See {manpage}`systemd.time(7)`.
          '';
        };
      };
      restart = mkOption {
        type = types.enum [
          "never"
          "when-empty"
          "now"
        ];
        default = "when-empty";
        example = "never";
        description = ''
          `LEFT4ME_UPDATE_RESTART`: how running instances move to a new
          generation. `never`: at their next start; `when-empty`: their
          health check restarts them once A2S reports no human players;
          `now`: `generation commit` restarts them at once.
        '';
      };
      keep = mkOption {
        # The helper's --keep: an u16 of at least 1.
        type = types.ints.between 1 65535;
        default = 2;
        example = 3;
        description = ''
          `LEFT4ME_UPDATE_KEEP`: generations kept, the current one included.
          One a mounted instance uses is never removed.
        '';
      };
      copy = mkOption {
        type = types.enum [
          "auto"
          "copy"
        ];
        default = "auto";
        example = "copy";
        description = ''
          `LEFT4ME_UPDATE_COPY`: how `generation prepare` starts the next
          generation from the current one. `auto`: reflinks where the file
          system has them, else hard links to root's read-only files (no
          space for unchanged files); `copy`: full copies, for a steamcmd
          that writes into existing files in place.
        '';
      };
      steamcmd = {
        package = mkOption {
          type = types.package;
          default = pkgs.steamcmd;
          defaultText = literalExpression "pkgs.steamcmd";
          example = literalExpression "pkgs.steamcmd.override { steamRoot = \"$HOME/steam\"; }";
          description = ''
            steamcmd, run as `left4me-update` with steamcmd's command line
            (`+force_install_dir DIR +login anonymous +app_update 222860 validate +quit`);
            its {file}`bin/steamcmd` becomes `LEFT4ME_STEAMCMD` in the unit.
            Evaluated only when {option}`enable` is set.
          '';
        };
        bubblewrap = mkOption {
          type = types.bool;
          default = true;
          example = false;
          description = ''
            Whether {option}`steamcmd.package` runs steamcmd through
            bubblewrap, as nixpkgs' does (`steam-run`, for the i386 client's
            FHS paths). The unit's sandbox then lets it create user and
            mount namespaces and make the system calls bubblewrap needs to
            set them up (`@mount`, `capset`, the `@privileged` set
            otherwise denied). Turn it off for a steamcmd that needs none
            of that, to keep the canonical sandbox.
          '';
        };
      };
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
            }: set through services.left4me.update (restart, keep, copy, steamcmd.package).";
          }
          {
            assertion = !cfg.update.timer.enable || cfg.update.enable;
            message = "services.left4me.update.timer.enable: the timer would start left4me-update.service, which has no steamcmd while services.left4me.update.enable is false; set both (and allow the unfree steamcmd, docs/nixos.md).";
          }
          {
            assertion = cfg.user != updateUser && cfg.group != updateUser;
            message = "services.left4me.user and .group: \"${updateUser}\" is the update user (docs/updates.md), which must be neither the service user nor share its group; choose another name.";
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
          optionalAttrs (cfg.resources.memoryHigh != null) { MemoryHigh = cfg.resources.memoryHigh; }
          // optionalAttrs (cfg.resources.memoryMax != null) { MemoryMax = cfg.resources.memoryMax; }
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

      # The rule file is JavaScript for polkitd; NixOS collects it here.
      security.polkit.enable = mkDefault true;
      security.polkit.extraConfig = rendered."left4me.rules";

      networking.firewall.allowedUDPPorts = firewallPorts;
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

    {
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

      systemd.services.left4me-update = {
        overrideStrategy = "asDropin";
        # A switch during a run would kill steamcmd; the next run uses the
        # new unit.
        restartIfChanged = false;
        serviceConfig = mkIf (cfg.update.enable && cfg.update.steamcmd.bubblewrap) {
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
        };
      };

      systemd.timers.left4me-update = mkIf cfg.update.timer.enable {
        overrideStrategy = "asDropin";
        wantedBy = [ "timers.target" ];
        # The empty entry resets the canonical OnCalendar= (a list setting):
        # otherwise both would trigger.
        timerConfig.OnCalendar = [
          ""
          cfg.update.timer.onCalendar
        ];
      };
    }

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

      # Not wantedBy on systemd.services."left4me-server@<name>": that would
      # create the instance's overrides.conf (see instanceDropinName).
      systemd.targets.multi-user.wants = mapAttrsToList (name: _: "left4me-server@${name}.service") (
        filterAttrs (_: inst: inst.autoStart) cfg.instances
      );

      systemd.services.left4me-prune-removed-instances = {
        description = "Disable left4me instances removed from the NixOS configuration";
        wantedBy = [ "multi-user.target" ];
        after = [ "systemd-tmpfiles-setup.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          # The declared names are arguments, so the unit changes with them
          # and every switch that removes an instance runs it again.
          ExecStart = lib.escapeShellArgs (
            [
              "${pruneRemovedInstances}"
              cfg.stateDir
            ]
            ++ builtins.attrNames cfg.instances
          );
        };
      };

    }
  ]);

  # Out-of-tree module: NixOS accepts only entries of lib.maintainers here,
  # and nobody of this project has one.
  meta.maintainers = [ ];
}
