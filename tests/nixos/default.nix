# NixOS VM tests: the scenarios of the Debian VM suite (tests/vm/), run
# against services.left4me with the same stand-in game server.
{ pkgs }:
let
  standin = import ./standin.nix { inherit pkgs; };
  stateDir = "/var/lib/left4me";
  # The loader services.left4me.i686Runtime binds by default (x86_64 only).
  loader32 = "${pkgs.pkgsi686Linux.glibc}/lib/ld-linux.so.2";

  # Lays down what an admin would: the game (stand-in) imported as the first
  # installation generation (`generation import`, the documented manual
  # path; docs/updates.md) and three shared layers. Ordered before the
  # autostarted instance so its first start at boot finds a complete tree.
  provision = helper: {
    description = "Provision the left4me stand-in game and overlays (test only)";
    wantedBy = [ "multi-user.target" ];
    before = [ "left4me-server@vs1.service" ];
    after = [ "systemd-tmpfiles-setup.service" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      set -eu
      s=${stateDir}
      if [ ! -e "$s/installations/current" ]; then
        # Store files are read-only; the game must find writable dirs below
        # merged/ exactly as on a host where steamcmd installed it.
        tree=$(mktemp -d)
        cp -rT ${standin.installation} "$tree/game"
        chmod -R u+w "$tree/game"
        echo installation > "$tree/game/left4dead2/cfg/shadow.txt"
        ${helper} --state-dir "$s" generation import "$tree/game"
        rm -rf "$tree"
      fi
      layer() { mkdir -p "$s/overlays/$1/left4dead2/cfg"; }
      layer mid
      printf 'hostname "mid layer"\n' > "$s/overlays/mid/left4dead2/cfg/server.cfg"
      echo mid > "$s/overlays/mid/left4dead2/cfg/shadow.txt"
      echo mid > "$s/overlays/mid/left4dead2/cfg/only-mid.txt"
      layer top
      printf 'hostname "top layer"\n' > "$s/overlays/top/left4dead2/cfg/server.cfg"
      echo top > "$s/overlays/top/left4dead2/cfg/shadow.txt"
      layer crash
      touch "$s/overlays/crash/left4dead2/crash"
      # The declared instance's own layer, above all overlays.
      mkdir -p "$s/instances/vs1/layer/left4dead2/cfg"
      echo instance > "$s/instances/vs1/layer/left4dead2/cfg/instance-layer.txt"
    '';
  };

  # The instances every test's machine declares; vm-lifecycle's live switch
  # replaces the whole set (lib.mkForce) with a changed one.
  baseInstances = {
    vs1 = {
      port = 27015;
      overlays = [
        "top"
        "mid"
      ];
      args = [
        "+map"
        "c1m1_hotel"
      ];
      openFirewall = true;
    };
    crash = {
      port = 27016;
      overlays = [ "crash" ];
      autoStart = false;
    };
  };

  machineBase =
    { config, ... }:
    {
      imports = [ ../../nixos-module ];
      virtualisation.memorySize = 2048;
      virtualisation.cores = 2;
      environment.systemPackages = [
        standin.a2sQuery
        # The admin command `left4me` (docs/nixos.md: add the package), which
        # the service user runs here as the web app would ask.
        config.services.left4me.package
      ];
      systemd.services.left4me-test-provision = provision "${config.services.left4me.package}/libexec/left4me/left4me-overlay";
      services.left4me = {
        enable = true;
        instances = baseInstances;
      };
    };

  # Removed by the live switch: it has a drop-in of its own (environment).
  goneInstance = {
    port = 27019;
    overlays = [ "top" ];
    autoStart = false;
    environment.TZ = "UTC";
  };
in
{
  lifecycle = pkgs.testers.runNixOSTest {
    name = "left4me-lifecycle";
    nodes.machine = {
      imports = [ machineBase ];
      services.left4me.instances.gone = goneInstance;
      # The raw request protocol (one line in, one line out), as the web
      # app speaks it.
      environment.systemPackages = [ pkgs.socat ];
      # A host that runs polkit for other reasons: left4me's users still get
      # no job from systemd but through the request socket.
      security.polkit.enable = true;
      # A unit the service user must not be able to start.
      systemd.services.left4me-test-foreign = {
        description = "Not a left4me unit";
        serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
      };
      # Root's job that stays queued while it runs (a oneshot's start job
      # lasts until its command exits): what the service user's
      # `--job-mode=flush` would cancel if systemd let it queue a job.
      systemd.services.left4me-test-slow = {
        description = "Root's long start job";
        serviceConfig = {
          Type = "oneshot";
          ExecStart = "${pkgs.coreutils}/bin/sleep 300";
        };
      };
      # What `nixos-rebuild switch` to a changed configuration does, without
      # rebuilding inside the VM: `gone` removed, `added` declared (its
      # password from an environment file, its server.cfg declared).
      specialisation.switched.configuration = {
        # A declared overlay, installed by the switch (no instance uses it yet).
        services.left4me.overlays.decl.source = pkgs.runCommand "left4me-test-decl-overlay" { } ''
          mkdir -p "$out/left4dead2"
          echo decl > "$out/left4dead2/decl.txt"
        '';
        services.left4me.instances = pkgs.lib.mkForce (
          baseInstances
          // {
            added = {
              port = 27020;
              overlays = [
                "decl"
                "mid"
              ];
              environmentFile = "/run/secrets/left4me-added.env";
              serverConfig = ''
                hostname "added layer"
              '';
            };
          }
        );
      };
    };

    testScript = ''
      S = "${stateDir}"


      SOCK = "/run/left4me-requests/requests.sock"


      def as_left4me(cmd):
          return f"runuser -u left4me -- {cmd}"


      # One raw request to root's request server (src/requests.rs,
      # docs/admin.md "Requests"): `VERB [INSTANCE] [no-block]` in, `ok` or
      # `error CODE MESSAGE` out. socat waits up to 120 s for the answer
      # after sending (its default is 0.5 s); a stop takes the game's 15 s.
      def request(line, user="left4me"):
          return machine.succeed(
              f"runuser -u {user} -- sh -c \"echo '{line}' | socat -t 120 - UNIX-CONNECT:{SOCK}\""
          ).strip()


      # systemctl as the service user, on its own: no polkit grant, so PID 1
      # refuses every job it asks for (and no agent may ask a password).
      def direct(cmd):
          return as_left4me(f"systemctl --no-ask-password {cmd}")


      def a2s(port, expected):
          machine.wait_until_succeeds(
              f"test \"$(a2s-query 127.0.0.1 {port} --timeout 2)\" = '{expected}'",
              timeout=60,
          )


      def mounted(instance):
          return machine.execute(f"findmnt -n -t overlay {S}/runtime/{instance}/merged")[0] == 0


      def held_by_any_namespace(instance):
          return machine.execute(f"grep -qs ' {S}/runtime/{instance}/merged ' /proc/[0-9]*/mountinfo")[0] == 0


      # A returned `systemctl stop left4me-server@X` does not mean unmounted:
      # left4me-overlay@X stops after it (StopWhenUnneeded=, docs/unit.md).
      def wait_unmounted(instance):
          machine.wait_until_fails(f"findmnt -n -t overlay {S}/runtime/{instance}/merged", timeout=60)
          assert not held_by_any_namespace(instance), f"a mount namespace still holds {instance}'s overlay"


      machine.wait_for_unit("multi-user.target")

      with subtest("install: user, state dir layout, the three units, the request socket, no polkit rule"):
          machine.succeed("id left4me")
          machine.succeed(f"test \"$(stat -c '%a %U %G' {S}/instances)\" = '1770 root left4me'")
          machine.succeed(f"test \"$(stat -c '%a %U %G' {S}/runtime)\" = '711 root root'")
          machine.succeed("systemctl cat left4me-overlay@vs1.service | grep -q '^ExecStart=.*/left4me-overlay --state-dir .* mount vs1$'")
          machine.succeed("systemctl cat left4me-reset@vs1.service | grep -q '^ExecStart=.*/left4me-overlay --state-dir .* reset vs1$'")
          # The game unit runs nothing as root and names its overlay unit.
          machine.fail("systemctl cat left4me-server@vs1.service | grep -E '^Exec[A-Za-z]*=[-@:]*[+!]'")
          machine.succeed("test \"$(systemctl show -P BindsTo left4me-server@vs1.service)\" = left4me-overlay@vs1.service")
          machine.fail("systemctl show -P EnvironmentFiles left4me-overlay@vs1.service left4me-reset@vs1.service | grep .")
          # The request socket listens from boot (sockets.target), root:group
          # 0660; its server starts with the first request. No polkit rule
          # names left4me, and the update proxy is gone.
          machine.succeed("systemctl is-active left4me-requests.socket")
          machine.succeed(f"test \"$(stat -c '%a %U %G %F' {SOCK})\" = '660 root left4me socket'")
          machine.succeed("systemctl cat left4me-requests.service | grep -q '^ExecStart=.*/left4me-overlay serve-requests --systemctl '")
          machine.fail("grep -rqs left4me /etc/polkit-1")
          machine.fail("systemctl cat left4me-update-now.service")
          machine.succeed(f"grep -qx 'LEFT4ME_STATE_DIR={S}' /etc/left4me/host.env")
          machine.succeed(f"test \"$(stat -c '%a %U' {S}/instances/vs1 {S}/instances/vs1/instance.env | tr '\\n' ' ')\" = '755 root 640 root '")
          machine.succeed(f"grep -qx 'L4D2_OVERLAYS=\"top mid\"' {S}/instances/vs1/instance.env")

      with subtest("declared instance config is not writable by the service user"):
          machine.fail(as_left4me(f"sh -c 'echo L4D2_PORT=1 >> {S}/instances/vs1/instance.env'"))
          machine.fail(as_left4me(f"mv {S}/instances/vs1 {S}/instances/stolen"))
          machine.fail(as_left4me(f"touch {S}/instances/vs1/new-file"))

      with subtest("enabled instance starts at boot with overlays; A2S shows the top layer's hostname"):
          machine.wait_for_unit("left4me-server@vs1.service")
          a2s(27015, "top layer")
          assert mounted("vs1"), "vs1 overlay not mounted"
          merged = f"{S}/runtime/vs1/merged/left4dead2/cfg"
          machine.succeed(f"test \"$(cat {merged}/shadow.txt)\" = top")
          machine.succeed(f"test \"$(cat {merged}/only-mid.txt)\" = mid")
          machine.succeed(f"test \"$(cat {merged}/instance-layer.txt)\" = instance")
          machine.succeed(f"test -s {S}/runtime/vs1/upper/left4dead2/logs/standin.log")
          machine.succeed(f"test \"$(cat {S}/installations/$(cat {S}/installations/current)/left4dead2/cfg/shadow.txt)\" = installation")

      with subtest("the health check runs as its own user; its metrics are not the service user's to rewrite"):
          machine.wait_for_unit("left4me-health@vs1.service")
          pid = machine.succeed("systemctl show -P MainPID left4me-health@vs1.service").strip()
          uid = machine.succeed("id -u left4me-health").strip()
          machine.succeed(f"test \"$(awk '/^Uid:/ {{print $2}}' /proc/{pid}/status)\" = {uid}")
          machine.succeed("test \"$(stat -c '%a %U %G' /run/left4me-metrics)\" = '775 root left4me-health'")
          machine.wait_until_succeeds("test \"$(stat -c %U /run/left4me-metrics/left4me_vs1.prom)\" = left4me-health", timeout=60)
          machine.fail(as_left4me("sh -c 'echo node_load1 99 >> /run/left4me-metrics/left4me_vs1.prom'"))
          machine.fail(as_left4me("chmod 0 /run/left4me-metrics/left4me_vs1.prom"))

      with subtest("the capped /run tmpfs mounts are mounted at boot, with their options"):
          for where, size in (("/run/left4me-health", "16384k"), ("/run/left4me-metrics", "8192k"), ("/run/left4me-steamcmd", "24576k")):
              opts = machine.succeed(f"findmnt -n -o FSTYPE,OPTIONS --mountpoint {where}").split()
              assert opts[0] == "tmpfs", f"{where}: {opts}"
              for o in ("nosuid", "nodev", "noexec", f"size={size}"):
                  assert o in opts[1].split(","), f"{where} lacks {o}: {opts[1]}"

      ${pkgs.lib.optionalString pkgs.stdenv.hostPlatform.isx86_64 ''
        with subtest("the i386 game runs through the unit's loader and libraries only"):
            # srcds_linux wants /lib/ld-linux.so.2, libstdc++ and libgcc_s
            # (standin.nix checks that at build time). The host's
            # /lib/ld-linux.so.2 is NixOS's stub (environment.stub-ld, on by
            # default since 24.05), which only prints why a generic binary
            # cannot run; the game must see the i686 glibc loader instead,
            # and only in its own mount namespace.
            pid = machine.succeed("systemctl show -P MainPID left4me-server@vs1.service").strip()
            machine.succeed(f"cmp /proc/{pid}/root/lib/ld-linux.so.2 ${loader32}")
            machine.succeed(f"grep -q ' /lib/ld-linux.so.2$' /proc/{pid}/maps")
            machine.succeed(f"grep -q 'libstdc++.so.6' /proc/{pid}/maps")
            # The unit's mounts leave nothing behind on the host: whatever is
            # at /lib/ld-linux.so.2 there (the stub, or nothing), it is not
            # the loader the unit binds, and there is no /bin/bash.
            machine.fail("cmp -s /lib/ld-linux.so.2 ${loader32}")
            machine.fail("test -e /bin/bash")
      ''}
      with subtest("stop: the overlay unit follows and unmounts, no namespace keeps the overlay"):
          machine.succeed("systemctl stop left4me-server@vs1.service")
          wait_unmounted("vs1")
          machine.fail("systemctl is-active left4me-overlay@vs1.service")
          machine.fail("journalctl -u left4me-overlay@vs1.service -o cat | grep -E 'status=14|EBUSY'")

      with subtest("reset through the request socket as the service user: discards upper/, keeps the config"):
          machine.succeed(as_left4me("left4me start vs1"))
          a2s(27015, "top layer")
          machine.succeed(as_left4me(f"touch {S}/runtime/vs1/merged/left4dead2/written-by-game"))
          env_before = machine.succeed(f"sha256sum {S}/instances/vs1/instance.env")
          # Refused while the instance runs (the reset unit fails, the
          # server answers its error); the game keeps running.
          answer = request("reset vs1")
          assert answer.startswith("error "), f"reset of a running instance: {answer!r}"
          machine.succeed("systemctl is-active left4me-server@vs1.service")
          # The web app's sequence, no sleeps: the reset unit orders itself
          # after the overlay unit's queued stop.
          for _ in range(3):
              for line in ("stop vs1", "reset vs1", "start vs1"):
                  answer = request(line)
                  assert answer == "ok", f"{line}: {answer!r}"
          a2s(27015, "top layer")
          machine.fail(f"test -e {S}/runtime/vs1/merged/left4dead2/written-by-game")
          assert machine.succeed(f"sha256sum {S}/instances/vs1/instance.env") == env_before
          machine.succeed(f"test -e {S}/instances/vs1/layer/left4dead2/cfg/instance-layer.txt")

      with subtest("crash loop ends failed after StartLimitBurst, overlay unmounted"):
          machine.execute("systemctl start left4me-server@crash.service")
          machine.wait_until_succeeds("systemctl is-failed left4me-server@crash.service", timeout=180)
          machine.succeed("test \"$(systemctl show -P Result left4me-server@crash.service)\" = start-limit-hit")
          wait_unmounted("crash")

      with subtest("requests: the service user has root run left4me-server@ jobs; systemd grants it none itself"):
          machine.succeed(as_left4me(f"mkdir {S}/instances/web"))
          machine.succeed(as_left4me(f"sh -c 'printf \"L4D2_PORT=27017\\nL4D2_OVERLAYS=\\\"top\\\"\\n\" > {S}/instances/web/instance.env'"))
          # The admin command, as a member of the group: requests, not systemctl.
          machine.succeed(as_left4me("left4me start web"))
          a2s(27017, "top layer")
          machine.succeed(as_left4me("left4me restart web"))
          a2s(27017, "top layer")
          machine.succeed(as_left4me("left4me stop web"))
          wait_unmounted("web")
          # Directly, the service user queues no job at all: not of its own
          # instances, and above all not with --job-mode=flush, which would
          # cancel every job queued on the host (root's start of
          # left4me-test-slow here). polkit could not have told the modes apart.
          machine.succeed("systemctl --no-block start left4me-test-slow.service")
          machine.wait_until_succeeds("systemctl list-jobs --no-legend | grep -q left4me-test-slow.service", timeout=30)
          machine.fail(direct("start left4me-server@web.service"))
          machine.fail(direct("start --job-mode=flush left4me-server@web.service"))
          machine.fail(direct("restart --job-mode=flush left4me-server@vs1.service"))
          machine.succeed("systemctl list-jobs --no-legend | grep -q left4me-test-slow.service")
          machine.fail("systemctl is-active left4me-server@web.service")
          machine.succeed("systemctl stop left4me-test-slow.service")
          # The root half comes and goes with the game only.
          machine.fail(direct("start left4me-overlay@web.service"))
          machine.fail(direct("start left4me-test-foreign.service"))
          machine.fail("systemctl is-active left4me-test-foreign.service")
          machine.succeed("systemctl start left4me-test-foreign.service")
          machine.fail(direct("stop left4me-test-foreign.service"))
          machine.fail(direct("restart systemd-journald.service"))
          # A request names an instance, never a unit: root builds
          # left4me-server@<name>, so this stops nothing of the foreign unit.
          request("stop left4me-test-foreign")
          machine.succeed("systemctl is-active left4me-test-foreign.service")
          machine.succeed("systemctl stop left4me-test-foreign.service")
          # What is no request is refused with an error line, and runs nothing.
          for line in ("start web --job-mode=flush", "start ../web", "restart left4me-overlay@web.service", "isolate web", "update now"):
              answer = request(line)
              assert answer.startswith("error "), f"{line!r} was not refused: {answer!r}"
          machine.fail("systemctl is-active left4me-server@web.service")
          # Only root and the group may connect (root:left4me 0660).
          machine.fail(f"runuser -u nobody -- sh -c \"echo 'start web' | socat -t 10 - UNIX-CONNECT:{SOCK}\"")
          machine.fail("systemctl is-active left4me-server@web.service")
          # Enabling is an admin step: systemctl refuses it, and on NixOS the
          # enable request fails too (read-only /etc/systemd/system;
          # declare autoStart instead).
          machine.fail(direct("enable left4me-server@web.service"))
          answer = request("enable web")
          assert answer.startswith("error "), f"enable web on NixOS: {answer!r}"

      with subtest("a symlink planted at runtime/<i>/merged is refused, nothing mounted at its target"):
          target = "/var/tmp/left4me-planted"
          machine.succeed(f"mkdir -p {target} && chown left4me: {target}")
          merged_web = f"{S}/runtime/web/merged"
          # The helper's modes keep the service user from planting it ...
          machine.fail(as_left4me(f"sh -c 'rm -rf {merged_web} && ln -s {target} {merged_web}'"))
          machine.succeed(f"test -d {merged_web} && test ! -L {merged_web}")
          # ... so root plants it, the worst case a mistake elsewhere could cause.
          machine.succeed(f"rm -rf {merged_web} && ln -s {target} {merged_web}")
          machine.fail("systemctl start left4me-server@web.service")
          machine.wait_until_succeeds("journalctl -u left4me-overlay@web.service -o cat | grep -q 'status=13'", timeout=30)
          machine.succeed("journalctl -u left4me-overlay@web.service -o cat | grep -qi 'symlink'")
          machine.fail(f"grep -qF {target} /proc/1/mountinfo")
          machine.succeed("systemctl stop left4me-server@web.service; systemctl reset-failed left4me-server@web.service left4me-overlay@web.service || true")
          machine.succeed(f"rm {merged_web}")

      with subtest("a symlink the service user plants in its own instance dir is refused"):
          machine.succeed(as_left4me(f"mkdir {S}/instances/evil"))
          machine.succeed(as_left4me(f"ln -s /etc {S}/instances/evil/layer"))
          machine.succeed(as_left4me(f"sh -c 'echo L4D2_PORT=27018 > {S}/instances/evil/instance.env'"))
          machine.fail(as_left4me("left4me start evil"))
          machine.wait_until_succeeds("journalctl -u left4me-overlay@evil.service -o cat | grep -q 'status=13'", timeout=30)
          machine.succeed("journalctl -u left4me-overlay@evil.service -o cat | grep -qi 'symlink'")
          machine.succeed("systemctl stop left4me-server@evil.service; systemctl reset-failed left4me-server@evil.service left4me-overlay@evil.service || true")
          assert not mounted("evil")
          machine.fail("findmnt -n -t overlay -o SOURCE,TARGET | grep -E 'evil|/etc'")

      with subtest("reboot brings the enabled instance back with its upper data"):
          machine.succeed(as_left4me(f"touch {S}/runtime/vs1/merged/left4dead2/survives-reboot"))
          machine.shutdown()
          machine.start()
          machine.wait_for_unit("left4me-server@vs1.service")
          a2s(27015, "top layer")
          assert mounted("vs1")
          machine.succeed(f"test -e {S}/runtime/vs1/merged/left4dead2/survives-reboot")
          machine.succeed("systemctl is-active left4me-requests.socket")
          machine.fail("systemctl is-active left4me-server@web.service")

      with subtest("live switch: one instance added, one removed; running servers are not restarted"):
          machine.succeed("systemctl start left4me-server@gone.service")
          a2s(27019, "top layer")
          machine.succeed("systemctl show -P DropInPaths left4me-server@gone.service | grep -q zz-left4me-instance.conf")
          running = ("vs1", "gone")
          show = "systemctl show -p MainPID -p InvocationID left4me-server@{}.service"
          before = {i: machine.succeed(show.format(i)) for i in running}
          # Root's file outside the store; its password must reach the game.
          machine.succeed(
              "install -d -m 0700 /run/secrets && "
              "printf 'L4D2_ARGS=\"-nohltv +map c2m1_highway +rcon_password pw-added-7Qx\"\\n' > /run/secrets/left4me-added.env && "
              "chmod 0600 /run/secrets/left4me-added.env"
          )
          machine.succeed("/run/current-system/specialisation/switched/bin/switch-to-configuration test")
          for i in running:
              after = machine.succeed(show.format(i))
              assert after == before[i], f"{i} was restarted by the switch: {before[i]!r} -> {after!r}"
          a2s(27015, "top layer")
          a2s(27019, "top layer")
          # gone: its drop-in and its instance.env went with the switch; it
          # keeps running until stopped (docs/nixos.md).
          machine.fail("systemctl show -P DropInPaths left4me-server@gone.service | grep -q zz-left4me-instance.conf")
          machine.fail("test -e /etc/systemd/system/left4me-server@gone.service.d/zz-left4me-instance.conf")
          machine.fail(f"test -e {S}/instances/gone/instance.env")
          # added: started by the switch (multi-user.target wants it), with
          # its declared server.cfg and the password from the file.
          machine.wait_for_unit("left4me-server@added.service")
          a2s(27020, "added layer")
          machine.succeed(f"test \"$(stat -c %U {S}/instances/added/layer/left4dead2/cfg/server.cfg)\" = left4me")
          machine.succeed(f"test \"$(stat -c '%U %a' {S}/overlays/decl {S}/overlays/decl/left4dead2/decl.txt | tr '\\n' ' ')\" = 'root 755 root 644 '")
          machine.succeed(f"test \"$(cat {S}/runtime/added/merged/left4dead2/decl.txt)\" = decl")
          machine.succeed(f"grep -q 'rcon_password pw-added-7Qx' {S}/instances/added/instance.env {S}/runtime/.left4me/added.env")
          # Not in what the store holds of the configuration: the manifest
          # names the file, host.env never sees it.
          machine.succeed(
              "m=$(systemctl show -P ExecStart left4me-declare.service | grep -o '/nix/store/[^ ;]*-left4me-declared' | head -n 1) && "
              "grep -q /run/secrets/left4me-added.env \"$m\" && ! grep -rqF pw-added-7Qx \"$m\" /etc/left4me/"
          )
    '';
  };

  # docs/updates.md on NixOS: services.left4me.update with the fake steamcmd
  # of the Debian VM suite (tests/vm/guest/fake-steamcmd: steamcmd's command
  # line, a new build id in the appmanifest, files replaced by rename).
  update = pkgs.testers.runNixOSTest {
    name = "left4me-update";
    nodes.machine = {
      imports = [ machineBase ];
      services.left4me.update = {
        enable = true;
        # Its first line is #!/bin/bash, which NixOS lacks: a comment below
        # writeShellScriptBin's own interpreter line.
        steamcmd.package = pkgs.writeShellScriptBin "steamcmd" (
          builtins.readFile ../vm/guest/fake-steamcmd
        );
        # The fake needs no namespaces: the canonical sandbox stays.
        steamcmd.bubblewrap = false;
        # The fake refuses an anonymous Linux install, as Valve's steamcmd
        # does since November 2024 (docs/updates.md).
        login = "anonymous-platform-workaround";
        # The stand-in reports no players, so when-empty would move vs1
        # at once; this test shows that a running instance keeps its
        # generation.
        restart = "never";
      };
      services.left4me.instances.fresh = {
        port = 27017;
        overlays = [ "top" ];
        autoStart = false;
      };
    };

    testScript = ''
      S = "${stateDir}"
      G = f"{S}/installations"


      def a2s(port, expected):
          machine.wait_until_succeeds(
              f"test \"$(a2s-query 127.0.0.1 {port} --timeout 2)\" = '{expected}'",
              timeout=60,
          )


      def current():
          return machine.succeed(f"cat {G}/current").strip()


      # The generation a mounted instance runs, from the game's environment
      # copy the helper writes at mount time.
      def env_generation(instance):
          return machine.succeed(
              f"sed -n 's/^LEFT4ME_GENERATION=\"\\{{0,1\\}}\\([^\"]*\\)\"\\{{0,1\\}}$/\\1/p' {S}/runtime/.left4me/{instance}.env"
          ).strip()


      def build_id(tree):
          return machine.succeed(
              f"sed -n 's/^[[:space:]]*\"buildid\"[[:space:]]*\"\\([0-9]*\\)\"$/\\1/p' {tree}/steamapps/appmanifest_222860.acf"
          ).strip()


      def fake_steamcmd(build, mode="ok"):
          machine.succeed(
              "mkdir -p /etc/left4me-test && "
              f"printf 'build={build}\\nmode={mode}\\nsource=${standin.installation}\\n' > /etc/left4me-test/fake-steamcmd.conf"
          )


      def run_update():
          machine.succeed("systemctl reset-failed left4me-update.service || true")
          machine.succeed("systemctl start left4me-update.service")


      machine.wait_for_unit("multi-user.target")
      machine.wait_for_unit("left4me-server@vs1.service")
      a2s(27015, "top layer")

      with subtest("installed: update unit as its own user, timer not enabled, host.env settings"):
          machine.succeed("test \"$(id -nG left4me-update)\" = left4me-update")
          machine.succeed("systemctl cat left4me-update.service | grep -qx 'User=left4me-update'")
          machine.fail("systemctl is-active left4me-update.timer")
          machine.fail("systemctl is-enabled left4me-update.timer")
          machine.succeed("grep -qx LEFT4ME_UPDATE_RESTART=never /etc/left4me/host.env")
          machine.succeed(f"test \"$(stat -c '%a %U %F' {G}/current)\" = '644 root regular file'")
          gen1 = current()
          assert env_generation("vs1") == gen1, f"vs1 runs {env_generation('vs1')}, not {gen1}"
          assert build_id(f"{S}/runtime/vs1/merged") == "1000"

      with subtest("a failed update leaves the current generation in place"):
          fake_steamcmd(1001, "fail")
          machine.fail("systemctl start left4me-update.service")
          assert current() == gen1
          machine.fail(f"test -e {G}/.next")
          machine.wait_until_succeeds("journalctl -u left4me-update.service -o cat | grep -q 'state is 0x202'", timeout=30)
          machine.succeed("systemctl is-active left4me-server@vs1.service")

      with subtest("update while vs1 runs: it keeps its generation and keeps answering"):
          fake_steamcmd(1001)
          run_update()
          gen2 = current()
          assert gen2 != gen1, "current did not move"
          assert build_id(f"{G}/{gen2}") == "1001"
          machine.succeed(f"test \"$(cat {G}/{gen2}/left4dead2/update-notes.txt)\" = 'build 1001'")
          machine.succeed(f"test \"$(stat -c %U {G}/{gen2}/left4dead2/update-notes.txt)\" = root")
          machine.succeed(f"test -d {G}/{gen1}")
          machine.succeed("systemctl is-active left4me-server@vs1.service")
          a2s(27015, "top layer")
          assert env_generation("vs1") == gen1
          assert build_id(f"{S}/runtime/vs1/merged") == "1000"
          machine.fail(f"test -e {S}/runtime/vs1/merged/left4dead2/update-notes.txt")
          # steamcmd's own files stay in the update user's home.
          machine.succeed("test \"$(stat -c '%a %U' /var/lib/left4me-update)\" = '700 left4me-update'")
          machine.succeed("test -s /var/lib/left4me-update/Steam/logs/fake-runs.txt")

      with subtest("a new start gets the new generation; a restart moves vs1"):
          machine.succeed("systemctl start left4me-server@fresh.service")
          a2s(27017, "top layer")
          assert env_generation("fresh") == gen2
          assert build_id(f"{S}/runtime/fresh/merged") == "1001"
          machine.succeed("systemctl restart left4me-server@vs1.service")
          a2s(27015, "top layer")
          assert env_generation("vs1") == gen2
          assert build_id(f"{S}/runtime/vs1/merged") == "1001"

      with subtest("collection: the oldest generation goes once unused (keep = 2)"):
          fake_steamcmd(1002)
          # The web app's "update now": the service user's `update` request,
          # which root's request server queues (no proxy unit any more);
          # `left4me update` follows the run to its end.
          machine.succeed("systemctl reset-failed left4me-update.service || true")
          machine.succeed("runuser -u left4me -- left4me update")
          gen3 = current()
          assert build_id(f"{G}/{gen3}") == "1002"
          machine.succeed("journalctl -u left4me-requests.service -o cat | grep -q 'request from uid .*: update'")
          machine.fail(f"test -e {G}/{gen1}")
          machine.succeed(f"test -d {G}/{gen2}")
          a2s(27015, "top layer")
    '';
  };

  # The service user must also exist when systemd-sysusers, not the
  # users-groups activation script, creates system users.
  sysusers = pkgs.testers.runNixOSTest {
    name = "left4me-sysusers";
    nodes.machine = {
      imports = [ machineBase ];
      systemd.sysusers.enable = true;
      users.mutableUsers = false;
    };
    testScript = ''
      machine.wait_for_unit("left4me-server@vs1.service")
      machine.succeed("id left4me")
      # The user's home must not be a second tmpfiles line for the state dir.
      machine.fail("journalctl -b -o cat | grep -F 'Duplicate line'")
      machine.succeed("test \"$(stat -c '%a %U' /var/lib/left4me)\" = '711 root'")
      machine.wait_until_succeeds("test \"$(a2s-query 127.0.0.1 27015 --timeout 2)\" = 'top layer'", timeout=60)
    '';
  };
}
