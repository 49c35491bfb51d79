# services.left4me.metrics: points NixOS's node exporter at the directory
# where the health checks write their Prometheus metrics (docs/metrics.md).
# The directory itself comes with the rendered tmpfiles layout
# (dist/left4me.tmpfiles.in) and the health unit's ReadWritePaths=, as on
# Debian; this only tells node exporter to read it.
{ config, lib, ... }:
let
  cfg = config.services.left4me;
  # The one path of dist/left4me-health@.service.in and the tmpfiles line.
  dir = "/run/left4me-metrics";
in
{
  options.services.left4me.metrics.nodeExporter = lib.mkOption {
    type = lib.types.bool;
    default = false;
    example = true;
    description = ''
      Enable {option}`services.prometheus.exporters.node` with its textfile
      collector reading `${dir}`, where every instance's health check
      writes `left4me_<name>.prom` and the host's `left4me_host.prom`
      (metric list and alerts: docs/metrics.md). Other textfile
      directories you give node exporter in its `extraFlags` stay: the flag
      may be repeated.
    '';
  };

  config = lib.mkIf (cfg.enable && cfg.metrics.nodeExporter) {
    services.prometheus.exporters.node = {
      enable = true;
      enabledCollectors = [ "textfile" ];
      extraFlags = [ "--collector.textfile.directory=${dir}" ];
    };
  };
}
