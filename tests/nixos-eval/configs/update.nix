# Game updates on (docs/updates.md) with every update setting changed, and
# the fake steamcmd of the VM tests as the package (nixpkgs' steamcmd is
# unfree, and the evaluation stand-in refuses it as nixpkgs would); the
# health check off (its template masked).
{ pkgs, ... }:
{
  services.left4me = {
    enable = true;
    instances.solo = { };
    health.enable = false;
    update = {
      enable = true;
      timer.enable = true;
      timer.onCalendar = "Mon *-*-* 05:30:00";
      restart = "now";
      keep = 3;
      copy = "copy";
      login = "anonymous-platform-workaround";
      credentialFile = "/etc/credstore/left4me-steam-login";
      steamcmd.package = pkgs.writeShellScriptBin "steamcmd" (
        builtins.readFile ../../vm/guest/fake-steamcmd
      );
    };
  };
}
