# The NixOS options that services.left4me and the real nixos code under
# ../shared/nixos-eval/nixos write or read but that are not in that excerpt
# (users-groups.nix, firewall.nix, etc.nix, assertions.nix, meta.nix,
# activation-script.nix). Types and defaults follow those modules where the
# code under test depends on them (users.users.<n>.home defaults to
# /var/empty, environment.etc.<n>.source is derived from .text).
{
  lib,
  pkgs,
  config,
  ...
}:
let
  inherit (lib) mkOption types;
  nullOrStr = mkOption {
    type = types.nullOr types.str;
    default = null;
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    meta.maintainers = mkOption {
      type = types.listOf types.raw;
      default = [ ];
    };

    users.mutableUsers = mkOption {
      type = types.bool;
      default = true;
    };
    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              name = mkOption {
                type = types.str;
                default = name;
              };
              enable = mkOption {
                type = types.bool;
                default = true;
              };
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
              };
              isNormalUser = mkOption {
                type = types.bool;
                default = false;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              description = mkOption {
                type = types.str;
                default = "";
              };
              home = mkOption {
                type = types.str;
                default = "/var/empty";
              };
              homeMode = mkOption {
                type = types.strMatching "[0-7]{1,5}";
                default = "700";
              };
              createHome = mkOption {
                type = types.bool;
                default = false;
              };
              # users-groups.nix: pkgs.shadow, whose shellPath is /bin/nologin.
              shell = mkOption {
                type = types.str;
                default = "/run/current-system/sw/bin/nologin";
              };
              uid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
              password = nullOrStr;
              initialPassword = nullOrStr;
              hashedPassword = nullOrStr;
              initialHashedPassword = nullOrStr;
              hashedPasswordFile = nullOrStr;
            };
          }
        )
      );
    };
    users.groups = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            gid = mkOption {
              type = types.nullOr types.int;
              default = null;
            };
            members = mkOption {
              type = types.listOf types.str;
              default = [ ];
            };
          };
        }
      );
    };

    # nixos/modules/services/monitoring/prometheus/exporters.nix, the three
    # options services.left4me.metrics sets.
    services.prometheus.exporters.node = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      enabledCollectors = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      extraFlags = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
    };

    networking.firewall.allowedUDPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    environment.pathsToLink = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          {
            name,
            config,
            options,
            ...
          }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
              };
              target = mkOption {
                type = types.str;
                default = name;
              };
              text = mkOption {
                type = types.nullOr types.lines;
                default = null;
              };
              source = mkOption { type = types.path; };
            };
            config.source = lib.mkIf (config.text != null) (
              lib.mkDerivedConfig options.text (pkgs.writeText ("etc-" + lib.replaceStrings [ "/" ] [ "-" ] name))
            );
          }
        )
      );
    };

    system.build = mkOption {
      type = types.lazyAttrsOf types.unspecified;
      default = { };
    };
    # users-groups.nix leaves it empty when systemd-sysusers creates users.
    system.activationScripts.users = mkOption {
      type = types.unspecified;
      default = if config.systemd.sysusers.enable then "" else "users-groups.pl";
    };
    system.etc.overlay = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      mutable = mkOption {
        type = types.bool;
        default = true;
      };
    };
  };
}
