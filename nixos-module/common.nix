# Values more than one file of the module needs, computed from the
# configuration in one place so the files cannot disagree (the rendered
# dist/*.in above all). Imported as `import ./common.nix { inherit config lib pkgs; }`.
{
  config,
  lib,
  pkgs,
}:
let
  inherit (lib)
    concatStringsSep
    mapAttrsToList
    optional
    ;
  cfg = config.services.left4me;
in
rec {
  inherit cfg;

  # The helper's rules, as the helper itself prints them
  # (`left4me-overlay --generate contract`, checked in as dist/contract.json
  # and tested current by the crate): names, srcds arguments, the health
  # settings' defaults and ranges. Read, never retyped, so a value the
  # module accepts is one the helper accepts.
  contract = builtins.fromJSON (builtins.readFile ../dist/contract.json);
  # builtins.match is anchored already.
  unanchored = pattern: lib.removePrefix "^" (lib.removeSuffix "$" pattern);
  instanceNamePattern = unanchored contract.instance_name.pattern;
  overlayNamePattern = unanchored contract.overlay_name.pattern;

  # Why the helper would refuse one word of L4D2_ARGS (envfile.rs's
  # check_args, with its messages), or null.
  argRefusal =
    word:
    let
      chars = builtins.filter (c: lib.hasInfix c.character word) contract.srcds_args.refused_characters;
      flags = builtins.filter (
        f: lib.toLower f.flag == lib.toLower word
      ) contract.srcds_args.refused_flags;
    in
    if word == "" || builtins.match ".*[[:space:]].*" word != null then
      "${quote word}: one element is one word (srcds receives L4D2_ARGS split at whitespace)"
    else if chars != [ ] then
      "${quote word} contains ${quote (builtins.head chars).character}; ${(builtins.head chars).why}"
    else if flags != [ ] then
      "${(builtins.head flags).flag} cannot work in left4me's sandbox: ${(builtins.head flags).why}"
    else
      null;
  # An instance's ports by the helper's rule (src/ports.rs, through the
  # contract): the game port, the client port and, unless the instance's own
  # args have -nohltv, SourceTV's; unset client and SourceTV ports are the
  # game port plus the contract's offsets. Like the helper, which reads only
  # instance.env, args = null counts SourceTV as on (host.env's default
  # L4D2_ARGS is not the instance's); an L4D2_ARGS from environmentFile is
  # not known here, and the helper judges it at start.
  portRule = contract.instance_env.ports;
  instancePorts =
    inst:
    let
      args = if inst.args == null then [ ] else inst.args;
      tvOn = !builtins.any (w: lib.toLower w == lib.toLower portRule.no_tv_flag) args;
      orOffset = explicit: offset: if explicit != null then explicit else inst.port + offset;
    in
    [
      {
        port = inst.port;
        what = "game port";
      }
      {
        port = orOffset inst.clientPort portRule.client_offset;
        what = "client port";
      }
    ]
    ++ lib.optional tvOn {
      port = orOffset inst.tvPort portRule.tv_offset;
      what = "SourceTV port";
    };

  # instance.env and host.env are read by systemd (EnvironmentFile=) and by
  # the helper, which accepts a strict subset of that syntax: values are
  # written double-quoted, so they must not need escaping.
  envKeyPattern = "[A-Za-z_][A-Za-z0-9_]*";
  envValuePattern = "[^\"\\\\$`\n]*";

  matches = pattern: s: builtins.match pattern s != null;
  quote = v: "\"${v}\"";
  # A double-quoted EnvironmentFile= value: inside, systemd and the helper
  # unescape \" \\ \$ \` (envfile.rs).
  quoteEnv = v: quote (lib.escape [ "\\" "\"" "$" "`" ] v);

  helperPath = "${cfg.package}/libexec/left4me/left4me-overlay";

  # Fixed, as on Debian: docs/updates.md names it, and the helper refuses
  # root and the service user as the owner of installations/.next/.
  updateUser = "left4me-update";

  # Fixed, as on Debian: the health checks' own user (dist/left4me.sysusers.in).
  healthUser = "left4me-health";

  # steamcmd is unfree. The update unit is installed either way (the request
  # server's `update` queues it, as on Debian), but only update.enable brings steamcmd
  # into the closure: without it the unit runs this instead, and a host that
  # never allowed unfree packages still evaluates. It fails after
  # `generation prepare`, and ExecStopPost's `generation abort` discards
  # .next/ again.
  updateDisabled = pkgs.writeShellScript "left4me-update-disabled" ''
    echo "left4me-update: services.left4me.update.enable is false in this NixOS configuration, so there is no steamcmd to run. Set it (nixpkgs' steamcmd is unfree: allow it, docs/nixos.md), or install the game by hand: left4me-overlay generation import DIR." >&2
    exit 1
  '';

  rendered = import ./render.nix {
    helper = helperPath;
    health = "${cfg.package}/bin/left4me-health";
    systemctl = "${config.systemd.package}/bin/systemctl";
    steamcmd =
      if cfg.update.enable then
        lib.getExe' cfg.update.steamcmd.package "steamcmd"
      else
        "${updateDisabled}";
    inherit (cfg) stateDir user group;
    inherit updateUser healthUser;
  };

  # The rendered files that are systemd units, by the install destination
  # package.nix gives them: the one list of units, derived from dist/.
  unitNames = builtins.filter (
    name: lib.hasPrefix "lib/systemd/system/" (import ./destinations.nix name)
  ) (builtins.attrNames rendered);

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
    mapLoadSec = "L4D2_HEALTH_MAP_LOAD_SEC";
    steamUpdateSec = "L4D2_HEALTH_STEAM_UPDATE_SEC";
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

  # NixOS names every drop-in it makes from systemd.services.<name>
  # "overrides.conf", and systemd loads only one file per name across
  # left4me-server@.service.d/ and left4me-server@<name>.service.d/: an
  # instance's overrides.conf would hide the template's. So an instance's
  # settings go into a file of their own, named to sort after overrides.conf.
  instanceDropinName = "zz-left4me-instance.conf";

  # What the module writes into a declared instance's instance.env besides
  # the header, which left4me-declare writes (it also recognises it when
  # pruning). Secrets never come through here: they are merged from
  # environmentFile at run time.
  declaredEnvLines =
    inst:
    [
      "L4D2_PORT=${toString inst.port}"
      "L4D2_OVERLAYS=${quote (concatStringsSep " " inst.overlays)}"
    ]
    ++ optional (inst.clientPort != null) "${portRule.client_key}=${toString inst.clientPort}"
    ++ optional (inst.tvPort != null) "${portRule.tv_key}=${toString inst.tvPort}"
    ++ optional (inst.cpus != null) "${contract.instance_env.cpus.key}=${inst.cpus}"
    ++ optional (inst.args != null) "L4D2_ARGS=${quoteEnv (concatStringsSep " " inst.args)}"
    ++ healthLines inst.health;
}
