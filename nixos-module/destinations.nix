# Where a file rendered from dist/<name>.in is installed, by its suffix:
# package.nix installs there, and the module takes every file that lands in
# lib/systemd/system/ as a unit. A new dist/*.in therefore needs no second
# list anywhere; an unknown kind of file stops evaluation instead of
# silently not shipping. Pure builtins, like ./render.nix.
name:
let
  parts = builtins.filter builtins.isString (builtins.split "\\." name);
  suffix = builtins.elemAt parts (builtins.length parts - 1);
  stem = builtins.substring 0 (builtins.stringLength name - builtins.stringLength suffix - 1) name;
  bySuffix = {
    service = "lib/systemd/system/${name}";
    socket = "lib/systemd/system/${name}";
    timer = "lib/systemd/system/${name}";
    slice = "lib/systemd/system/${name}";
    target = "lib/systemd/system/${name}";
    path = "lib/systemd/system/${name}";
    mount = "lib/systemd/system/${name}";
    sysusers = "lib/sysusers.d/${stem}.conf";
    tmpfiles = "lib/tmpfiles.d/${stem}.conf";
    env = "share/left4me/${name}.example";
  };
in
bySuffix.${suffix}
  or (throw "nixos-module/destinations.nix: no install destination for dist/${name}.in (suffix .${suffix}); add one here")
