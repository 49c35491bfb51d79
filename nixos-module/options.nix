# The options of services.left4me (docs/nixos.md, section 4). What they
# turn into lives in the other files of this directory.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkEnableOption
    mkOption
    mkRenamedOptionModule
    types
    ;
  inherit (import ./common.nix { inherit config lib pkgs; })
    cfg
    instanceDropinName
    contract
    healthKeys
    unanchored
    ;

  # One set of options, used host-wide (defaults: the binary's) and per
  # instance (default null: the host's value). Defaults and ranges are the
  # health check's own, from the contract (dist/contract.json).
  healthOptions =
    { perInstance }:
    let
      setting =
        option: description:
        let
          knob = lib.findFirst (
            k: k.key == healthKeys.${option}
          ) (throw "dist/contract.json has no ${healthKeys.${option}}") contract.health;
          # Whole numbers as integers: Nix prints a float with six decimals.
          whole = v: if v == builtins.floor v then builtins.floor v else v;
          type =
            if knob.unit == "count" then
              types.ints.between (whole knob.min) (whole knob.max)
            else
              types.addCheck types.number (
                v: (if knob.min_exclusive then v > knob.min else v >= knob.min) && v <= knob.max
              )
              // {
                description = "number of seconds, ${
                  if knob.min_exclusive then "more than" else "at least"
                } ${toString (whole knob.min)} and at most ${toString (whole knob.max)}";
              };
          default = whole knob.default;
        in
        mkOption {
          type = if perInstance then types.nullOr type else type;
          default = if perInstance then null else default;
          example = default * 2;
          description =
            description + lib.optionalString perInstance " `null`: {option}`services.left4me.health` decides.";
        };
    in
    {
      graceSec = setting "graceSec" "Seconds after the server's start before the first query (the game loads a map first).";
      intervalSec = setting "intervalSec" "Seconds from one A2S_INFO query to the next.";
      timeoutSec = setting "timeoutSec" "Seconds without an answer after which a query failed.";
      failures = setting "failures" "Failed queries in a row that restart the server (one lost datagram is one failure).";
      restartsMax = setting "restartsMax" "Restarts by the health check within {option}`restartsWindowSec`; one more would be due, the check ends the server as `failed` instead (0: at the first hang).";
      restartsWindowSec = setting "restartsWindowSec" "The window of that restart budget, in seconds.";
      mapLoadSec = setting "mapLoadSec" "Seconds after the game logs a map change (`---- Host_Changelevel ----`) during which its silence is a map load, not a failure (0: no map change is told apart).";
      steamUpdateSec = setting "steamUpdateSec" "When the game logs Steam's \"needs to be restarted\" notice, the check queues `left4me-update.service` unless it started less than this many seconds ago (0: never).";
    };

  # systemd's memory sizes (systemd.resource-control(5)): bytes with an
  # optional K, M, G, T, P or E (base 1024), a percentage of physical
  # memory, or infinity. "4 GB" would load, and systemd would ignore it
  # with a warning and keep the template's 2G.
  memorySize = types.strMatching "([0-9]+(\\.[0-9]+)?[KMGTPE]?|[0-9]+(\\.[0-9]+)?%|infinity)";

  # A syntax check of OnCalendar= (systemd.time(7)): one of the shorthand
  # words, or an optional weekday list, a date and/or time of digits,
  # `* , / . ~ - :`, and an optional time zone. Not systemd's parser: it
  # refuses prose ("daily at 4am", which makes the timer fail to load),
  # and tests/nixos-eval checks the built timer with systemd-analyze.
  calendar = types.strMatching "(minutely|hourly|daily|weekly|monthly|yearly|annually|quarterly|semiannually|([A-Za-z]{3}([,.-]+[A-Za-z]{3})* )?[0-9*][0-9*:,./~ -]*( [A-Za-z_/+-]+)?)";

  # An absolute path as a string: a Nix path value (./secret.env) would be
  # copied into the world-readable store, the very thing the option avoids,
  # so the type refuses it.
  secretPath = types.strMatching "/[^\t\n]*";

  # mkRenamedOptionModule inside a submodule renames, but its warning goes
  # to the submodule's `warnings`, which does not exist there (lib/modules.nix
  # doRename: `optionalAttrs (options ? warnings)`), so nobody is told. The
  # submodule collects its own; assertions.nix lifts them into `warnings`.
  renamedInSubmodule =
    prefix: from: to:
    { options, ... }:
    {
      imports = [ (mkRenamedOptionModule from to) ];
      config.renamedOptionWarnings =
        let
          old = lib.getAttrFromPath from options;
        in
        lib.optional old.isDefined "The option `${prefix}.${lib.showOption from}' defined in ${lib.showFiles old.files} has been renamed to `${prefix}.${lib.showOption to}'.";
    };

  instanceOptions =
    { name, ... }:
    {
      # `enable` read like NixOS's systemd.services.<name>.enable (whether
      # the unit exists at all), which is not what it did.
      imports = [
        (renamedInSubmodule "services.left4me.instances.${name}" [ "enable" ] [ "autoStart" ])
      ];
      options = {
        renamedOptionWarnings = mkOption {
          type = types.listOf types.str;
          default = [ ];
          internal = true;
          visible = false;
          description = "Warnings about renamed options of this instance.";
        };
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
          description = ''
            UDP/TCP game port (`L4D2_PORT`). No port of an instance (game,
            client, SourceTV) may be another's.
          '';
        };
        clientPort = mkOption {
          type = types.nullOr types.port;
          default = null;
          example = 27005;
          description = ''
            srcds' client port (`L4D2_CLIENT_PORT`, `+clientport`). `null`:
            {option}`port` + 100 (docs/unit.md, "Ports").
          '';
        };
        tvPort = mkOption {
          type = types.nullOr types.port;
          default = null;
          example = 27020;
          description = ''
            The SourceTV port (`L4D2_TV_PORT`, `+tv_port`), bound unless
            {option}`args` has `-nohltv`. `null`: {option}`port` + 200.
          '';
        };
        cpus = mkOption {
          type = types.nullOr (types.strMatching (unanchored contract.instance_env.cpus.pattern));
          default = null;
          example = "2-3";
          description = ''
            The CPUs this instance's game may run on (`L4D2_CPUS`, a cpu
            list such as `1`, `0-3` or `0,2,4-5`), applied as the server
            unit's `AllowedCPUs=`: no thread of the game can leave them. A
            CPU the host does not have makes the start fail (exit 24).
            `null`: every CPU.
          '';
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
            The srcds arguments of this instance (`L4D2_ARGS`), one word per
            element. They replace the host default `L4D2_ARGS` of
            {file}`/etc/left4me/host.env` ({option}`services.left4me.hostSettings`)
            as a whole; they are not added to it, so repeat what the
            instance still needs of it (a map, `-nohltv`, ...). `null`: the
            host default applies. Not for passwords: this ends up in the
            world-readable Nix store; put `L4D2_ARGS` with an
            `+rcon_password` or `+sv_password` into {option}`environmentFile`
            instead (its `L4D2_ARGS`, if any, replaces this one).
          '';
        };
        environmentFile = mkOption {
          type = types.nullOr secretPath;
          default = null;
          example = "/run/secrets/left4me-vs1.env";
          description = ''
            A root-owned file outside the Nix store (agenix, sops-nix or by
            hand; mode 0600 or 0640) whose `L4D2_*` lines are merged into
            this instance's {file}`instance.env` by the root service
            `left4me-declare` at boot, at every switch that changes the
            instance and before each start of the instance, after the
            module's own lines and {option}`services.left4me.environmentFile`'s,
            so its values win. For secrets, such as
            `L4D2_ARGS="+map c1m1_hotel +rcon_password ..."`. The syntax is
            instance.env's: `KEY=value`, `KEY="value"` or `KEY='value'`,
            `#` comment lines; only `L4D2_*` keys, not `L4D2_PORT` or
            `L4D2_OVERLAYS`; no tabs or other control characters. The file
            and every directory above it must be root's and not writable by
            anyone else (a sticky directory such as {file}`/tmp` excepted),
            so the service user cannot choose what root reads. A string,
            not a Nix path: a path would be copied into the store. If the
            file is missing or refused, the instance gets no
            {file}`instance.env` and does not start (fail closed).
          '';
        };
        serverConfig = mkOption {
          type = types.nullOr types.lines;
          default = null;
          example = ''
            hostname "left4me vs1"
            sv_gametypes "versus"
          '';
          description = ''
            The text of this instance's
            {file}`''${stateDir}/instances/${name}/layer/left4dead2/cfg/server.cfg`,
            its own topmost lower layer. Written by `left4me-declare` as the
            service user (whose layer it is, so a symlink there cannot make
            root write anywhere), before each start of the instance; while
            the instance runs, a switch leaves the file alone (a lower layer
            must not change under a mounted overlay) and the new text applies
            at its next start. `null`: the module does not touch the file.
            It is in the Nix store: no `rcon_password` here (use
            {option}`environmentFile`).
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
            Whether to open this instance's ports in the firewall: UDP
            {option}`port` (game traffic and server queries) and, when
            SourceTV is on (no `-nohltv` in {option}`args`), UDP
            {option}`tvPort`. The client port needs no opening (srcds only
            sends from it; replies pass as established traffic); TCP RCON
            on {option}`port` stays closed (the console,
            `/run/left4me/NAME.stdin`, is the local way in).
          '';
        };
      };
    };
in
{
  imports = [
    (lib.mkRemovedOptionModule [ "services" "left4me" "resources" "memoryHigh" ] ''
      MemoryHigh= makes a game sleep inside its own page faults, holding whatever
      kernel lock it took, such as that of a cgroupfs directory PID 1 writes
      (docs/unit.md, "The boundary"); the games have resources.memoryMax only.
    '')
  ];

  options.services.left4me = {
    enable = mkEnableOption ''
      left4me: the `left4me-server@.service` template, `l4d2-game.slice`,
      the service user, the state directory layout, the request socket
      (`left4me-requests.socket`, through which the service user and its
      group have root start, stop and reset instances) and the declared
      instances'';

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

    # pkgs.left4me exists with this flake's overlays.default; without it the
    # module builds the package from the system's own nixpkgs.
    package =
      lib.mkPackageOption (pkgs // { left4me = pkgs.left4me or (pkgs.callPackage ./package.nix { }); })
        "left4me"
        {
          example = "inputs.left4me.packages.\${pkgs.stdenv.hostPlatform.system}.default";
          extraDescription = "It provides {file}`libexec/left4me/left4me-overlay` and {file}`bin/left4me-health`.";
        }
      // {
        defaultText = literalExpression "pkgs.left4me or (pkgs.callPackage ./package.nix { })";
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
    health = healthOptions { perInstance = false; } // {
      enable = mkOption {
        type = types.bool;
        default = true;
        example = false;
        description = ''
          Whether `left4me-health@.service` runs beside every server (the
          template `Wants=` it). `false` installs the unit masked (a symlink
          to {file}`/dev/null`), so it never starts and its name cannot be
          taken by a transient unit either; the servers then run without
          the A2S check and its restarts (and without `update.restart =
          "when-empty"`, which the check carries out).
        '';
      };
    };

    environmentFile = mkOption {
      type = types.nullOr secretPath;
      default = null;
      example = "/run/secrets/left4me-host.env";
      description = ''
        Like {option}`instances.<name>.environmentFile`, for every declared
        instance: its `L4D2_*` lines come after the module's header and
        before each instance's own lines, so an instance's {option}`args`,
        {option}`health` and own file win over it. Instances the web app
        creates do not get it (it is merged into declared instances'
        {file}`instance.env` only); {file}`/etc/left4me/host.env` is in the
        store and carries no secret.
      '';
    };

    overlays = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.source = mkOption {
            type = types.path;
            example = literalExpression "pkgs.fetchzip { url = \"https://sm.alliedmods.net/smdrop/1.12/sourcemod-1.12.0-git7210-linux.tar.gz\"; hash = \"...\"; stripRoot = false; }";
            description = ''
              A store path (a package, a fetcher's result, or a Nix path,
              which is copied into the store) whose tree becomes
              {file}`''${stateDir}/overlays/<name>/`, root-owned, files
              0644 or 0755, symlinks resolved. `left4me-declare` copies it
              beside the old tree and renames it into place, only while no
              mounted instance uses the overlay (a lower layer must not
              change under a mounted overlay): at boot before the
              instances, at a switch, and before each instance's start.
              A running instance keeps the old tree; the new one applies
              when every instance using it has been stopped and one starts
              again (or at `systemctl restart left4me-declare`).
              Removing the declaration leaves the last tree in place.
            '';
          };
        }
      );
      default = { };
      example = literalExpression "{ sourcemod.source = pkgs.callPackage ./sourcemod.nix { }; }";
      description = ''
        Overlays whose content the configuration declares. Others under
        {file}`''${stateDir}/overlays/` (put there by hand or by the web app)
        are not touched.
      '';
    };

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
          type = calendar;
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
      login = mkOption {
        type = types.enum [
          "account"
          "anonymous-platform-workaround"
        ];
        default = "account";
        example = "anonymous-platform-workaround";
        description = ''
          `LEFT4ME_STEAM_LOGIN`: how steamcmd logs in (docs/updates.md,
          "Installing the game"). Valve refuses an anonymous Linux install
          of app 222860 since November 2024. `account`: a Steam account that
          owns Left 4 Dead 2, from {option}`credentialFile`; Steam Guard needs
          one interactive login first (docs/updates.md). `anonymous-platform-workaround`:
          anonymous, `app_update` with the Windows platform forced, then with
          Linux; the Windows-only files are removed at commit.
        '';
      };
      credentialFile = mkOption {
        # A string, not a path: a path would be copied into the
        # world-readable Nix store.
        type = types.nullOr types.str;
        default = null;
        example = "/etc/credstore.encrypted/left4me-steam-login";
        description = ''
          Root-only file with the account for {option}`login` = `account`:
          its name on the first line, its password on the second (or no
          second line, to use the session steamcmd cached). Loaded as the
          systemd credential `steam-login` (`LoadCredential=`, or
          `LoadCredentialEncrypted=` with {option}`credentialEncrypted`), so
          it reaches only the unit's `$CREDENTIALS_DIRECTORY`. An absolute
          path as a string, never a Nix path (that would copy the password
          into the store). Make an encrypted one with
          `systemd-creds encrypt --name=steam-login - FILE`.
        '';
      };
      credentialEncrypted = mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = ''
          Whether {option}`credentialFile` is `systemd-creds encrypt` output
          (`LoadCredentialEncrypted=`) rather than plain text (`LoadCredential=`).
        '';
      };
      steamcmd = {
        package = lib.mkPackageOption pkgs "steamcmd" {
          example = "pkgs.steamcmd.override { steamRoot = \"$HOME/steam\"; }";
          extraDescription = ''
            It is run as `left4me-update` by `left4me-overlay generation fetch`
            as `steamcmd +runscript FILE` (the login and `app_update 222860`
            in FILE, docs/updates.md);
            its {file}`bin/steamcmd` becomes `LEFT4ME_STEAMCMD` in the unit.
            Evaluated only when {option}`services.left4me.update.enable` is set
            (nixpkgs' steamcmd is unfree).
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
      memoryMax = mkOption {
        type = types.nullOr memorySize;
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
        cannot change (written by `left4me-declare` from these settings and
        the environment files), and (with {option}`autoStart`) start at
        boot. Instances the web app creates at run time live beside them and
        are not touched.
      '';
    };
  };
}
