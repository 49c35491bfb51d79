/*
 * Test-only stand-in for the Source dedicated server binary (srcds_linux).
 *
 * Built as a dynamically linked i386 binary like the real srcds_linux: the
 * i386 loader (/lib/ld-linux.so.2), libc, libstdc++ and libgcc_s from the
 * host's 32-bit packages must load under the unit's sandbox (seccomp with
 * the x86 ABI, ProtectSystem=, PrivateUsers=), and the unit's
 * SystemCallArchitectures= is exercised for real.
 *
 * Behaviour that the VM scenarios rely on:
 *   -game DIR         game dir, relative to the cwd srcds_run chdir'd into
 *   +hostport N       UDP port for A2S queries (all IPv4 addresses)
 *   +clientport N     UDP client port (default 27005), bound and kept open
 *   +tv_port N        UDP SourceTV port (default 27020), bound and kept
 *                     open unless -nohltv; it does not answer queries
 *                     (the real SourceTV does)
 *                     Each port, like srcds (Source SDK 2013,
 *                     engine/net_ws.cpp, NET_OpenSocket): without
 *                     SO_REUSEADDR (srcds sets it only with -reuse); when
 *                     the port is taken (EADDRINUSE), the next of
 *                     PORT_TRY_MAX = 10 ports, logging "Socket bound to
 *                     non-default port N because original port was already
 *                     in use."; when all ten are taken the client port
 *                     falls back to any port (OpenSocketInternal's bTryAny),
 *                     the others end the process ("Couldn't allocate any
 *                     server IP port"). A2S_INFO's extra data reports the
 *                     game port actually bound, as srcds's
 *                     net_sockets[].nPort does.
 *   threads           two threads, like the engine's worker threads that
 *                     set their own affinity: one asks sched_setaffinity
 *                     for every CPU, one for CPU 0 alone; each logs what it
 *                     asked, the result and the CPUs it then runs on, and
 *                     stays alive, so /proc/PID/task shows where every
 *                     thread may run (the L4D2_CPUS scenario)
 *   +map NAME         map reported in A2S_INFO (default c1m1_hotel)
 *   DIR/gameinfo.txt  must exist, else exit 1 (like a broken install)
 *   DIR/cfg/server.cfg  `hostname "..."` is the name A2S_INFO reports
 *   DIR/crash         if present: exit 3 at once (crash-loop scenario);
 *                     a file rather than an env var so any layer of the
 *                     overlay stack can inject it
 * Health-check switches, looked up on every query so a scenario can flip
 * them while the server runs (written through merged/ into upper/) or ship
 * them in a layer (then they hold from the first query):
 *   DIR/hang          stop answering for good and ignore SIGINT, like a
 *                     deadlocked main loop; only SIGKILL ends the process
 *   DIR/slow          answer A2S_INFO after the delay in milliseconds the
 *                     file holds (empty: 1000)
 *   DIR/drop-one      drop exactly one A2S_INFO answer in this process's life
 *   DIR/map-load      milliseconds a `changelevel` keeps the server busy
 *                     loading (empty or not a number: 1000): no query is
 *                     answered meanwhile. srcds loads a map on its main
 *                     thread and answers no A2S query until it is done; on
 *                     slow disks that took long enough for LinuxGSM's
 *                     monitor to restart servers mid-load until it allowed
 *                     about 60 s (GameServerManagers/LinuxGSM#61, #3208,
 *                     #4343). Absent: a changelevel costs nothing.
 *   DIR/stall         the next query blocks the main thread for the
 *                     milliseconds the file holds, printing nothing: a
 *                     silence without a map change (see stall())
 *   DIR/steam-update  print Steam's "needs to be restarted" notice, as
 *                     the engine does when Steam has a newer build, again
 *                     every so many milliseconds (see steam_notice())
 *   DIR/players       the player count A2S_INFO reports: "N" is N players,
 *                     no bots; "N B" is N+B players of which B are bots
 *                     (Source counts bots among the players); missing,
 *                     empty or not numbers: 0 players. Capped at 255
 *                     each, the reply's one byte
 *   DIR/logs/standin.log  appended on start, per query and on exit, so
 *                     the writable upper layer receives data
 *   SIGINT            exit 0 (srcds's KillSignal)
 *   stdin             console commands, one per line, like srcds's own
 *                     console: `changelevel NAME` changes the map A2S_INFO
 *                     reports, `say TEXT` is logged, anything else is
 *                     logged as unknown. End of input is not an error.
 *   $HOME             like Steam: dlopen()s ~/.steam/sdk32/steamclient.so
 *                     and logs whether it loaded (the real server logs
 *                     "dlopen failed trying to load" when it cannot), and
 *                     writes ~/.standin-home, so a read-only home shows.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
static FILE *logf;
static char map[256] = "c1m1_hotel";
static const char *game_dir;

static void on_sigint(int sig) { (void)sig; stop_requested = 1; }

static void logmsg(const char *fmt, ...)
{
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("standin: %s\n", line);
    fflush(stdout);
    if (logf) {
        fprintf(logf, "%ld %s\n", (long)time(NULL), line);
        fflush(logf);
    }
}

/* Reads `hostname "..."` from server.cfg; unquoted values are accepted too. */
static void read_hostname(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "hostname", 8) != 0 || (p[8] != ' ' && p[8] != '\t'))
            continue;
        p += 8;
        while (*p == ' ' || *p == '\t')
            p++;
        char *end;
        if (*p == '"') {
            p++;
            end = strchr(p, '"');
        } else {
            end = p + strcspn(p, " \t\r\n");
        }
        if (!end)
            end = p + strcspn(p, "\r\n");
        size_t n = (size_t)(end - p);
        if (n >= outlen)
            n = outlen - 1;
        memcpy(out, p, n);
        out[n] = '\0';
    }
    fclose(f);
}

static size_t put_str(uint8_t *buf, size_t off, size_t cap, const char *s)
{
    size_t n = strlen(s) + 1;
    if (off + n > cap)
        return cap;
    memcpy(buf + off, s, n);
    return off + n;
}

static long file_ms(const char *name);

/* One console line, as srcds's console would take it. */
static void console_command(char *line)
{
    line[strcspn(line, "\r")] = '\0';
    if (!strncmp(line, "changelevel ", 12) && line[12]) {
        snprintf(map, sizeof map, "%.*s", (int)sizeof map - 1, line + 12);
        logmsg("console: changelevel %s", map);
        /* The engine's own line at the start of a changelevel (Source SDK
         * 2013 engine/host.cpp, Host_Changelevel: Warning("---- Host_Changelevel
         * ----\n")), unprefixed, as srcds prints it. */
        printf("---- Host_Changelevel ----\n");
        fflush(stdout);
        long ms = file_ms("map-load");
        if (ms > 0) {
            logmsg("loading map %s for %ld ms, no queries answered until then", map, ms);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested)
                ;
            logmsg("map %s loaded", map);
        }
    } else if (!strncmp(line, "say ", 4)) {
        logmsg("console: say %s", line + 4);
    } else if (line[0]) {
        logmsg("console: unknown command \"%s\"", line);
    }
}

/* Waits for a UDP datagram while serving the console on stdin. Returns 1
 * when the socket is readable, 0 when interrupted (SIGINT) or a console
 * line was handled. */
static int wait_for_query(int fd)
{
    static char buf[1024];
    static size_t used;
    static int stdin_open = 1;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    if (poll(p, stdin_open ? 2 : 1, -1) < 0)
        return 0;
    if (stdin_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(0, buf + used, sizeof buf - 1 - used);
        if (n <= 0) {
            stdin_open = 0;
            return 0;
        }
        used += (size_t)n;
        char *nl;
        while ((nl = memchr(buf, '\n', used))) {
            *nl = '\0';
            console_command(buf);
            used -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, used);
        }
        if (used == sizeof buf - 1) /* a line longer than any command: drop it */
            used = 0;
    }
    return (p[0].revents & POLLIN) != 0;
}

/* What Steam's API does with $HOME at start: load the client library from
 * ~/.steam/sdk32 and write state into the home. */
static void steam_home(void)
{
    const char *home = getenv("HOME");
    char path[4096];
    if (!home) {
        logmsg("steam: HOME is not set");
        return;
    }
    snprintf(path, sizeof path, "%s/.steam/sdk32/steamclient.so", home);
    void *lib = dlopen(path, RTLD_NOW);
    if (lib && dlsym(lib, "CreateInterface"))
        logmsg("steam: loaded %s", path);
    else
        logmsg("steam: dlopen failed trying to load: %s with error: %s", path,
               lib ? "no CreateInterface" : dlerror());
    snprintf(path, sizeof path, "%s/.standin-home", home);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n", (long)time(NULL));
        fclose(f);
        logmsg("steam: HOME %s is writable", home);
    } else {
        logmsg("steam: cannot write %s: %s", path, strerror(errno));
    }
}

static int switch_on(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", game_dir, name);
    return access(path, F_OK) == 0;
}

/* DIR/stall: the main thread blocks for the milliseconds the file holds
 * and prints nothing meanwhile (a plugin or a disk that stalls the server
 * without a map change), then answers again. The scenario removes the
 * file once it sees the log line, or every query stalls again. */
static void stall(long ms)
{
    if (ms <= 0)
        return;
    logmsg("stall: main thread blocked for %ld ms, no map change", ms);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested)
        ;
}

/* DIR/steam-update: Steam has a newer build. The engine then prints, on
 * the master server's request, "Your server needs to be restarted in order
 * to receive the latest update." with Msg() and the same text through
 * Log() (Source SDK 2013 engine/baseserver.cpp; ReHLDS prints it the same
 * way), and repeats it while the request stands (at the master server's
 * heartbeat, minutes apart); here at a query, at most once per the
 * milliseconds the file holds (empty: 1000). */
static void steam_notice(void)
{
    static struct timespec last;
    long every = file_ms("steam-update");
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long since = (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000;
    if (every <= 0 || (last.tv_sec && since < every))
        return;
    last = now;
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char stamp[64];
    strftime(stamp, sizeof stamp, "L %m/%d/%Y - %H:%M:%S: ", &tm);
    printf("Your server needs to be restarted in order to receive the latest update.\n"
           "%sYour server needs to be restarted in order to receive the latest update.\n",
           stamp);
    fflush(stdout);
    logmsg("steam-update: printed Steam's restart notice");
}

/* Milliseconds from DIR/NAME: 0 when absent, 1000 when empty or not a
 * number. */
static long file_ms(const char *name)
{
    char path[4096], buf[32] = "";
    snprintf(path, sizeof path, "%s/%s", game_dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end;
    long ms = strtol(buf, &end, 10);
    return (end == buf || ms <= 0) ? 1000 : ms;
}

/* From DIR/players: humans and bots; *players includes the bots. */
static void player_count(uint8_t *players, uint8_t *bots)
{
    char path[4096], buf[64] = "";
    *players = 0;
    *bots = 0;
    snprintf(path, sizeof path, "%s/players", game_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end;
    long humans = strtol(buf, &end, 10);
    if (end == buf || humans < 0)
        return;
    long b = strtol(end, &end, 10);
    if (b < 0)
        b = 0;
    long total = humans + b;
    *players = (uint8_t)(total > 255 ? 255 : total);
    *bots = (uint8_t)(b > 255 ? 255 : b);
}

static void hang_forever(void)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ign, NULL);
    logmsg("hang: %s/hang present: no more answers, SIGINT ignored", game_dir);
    for (;;)
        pause();
}

#define PORT_TRY_MAX 10

/* NET_OpenSocket: bind `port` or, while EADDRINUSE, the next ones; `any`:
 * then any port. Returns the socket, with *port updated, or -1. */
static int open_port(const char *what, int *port, int any)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        logmsg("socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    for (int off = 0; off < PORT_TRY_MAX; off++) {
        addr.sin_port = htons((uint16_t)(*port + off));
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            if (off) {
                *port += off;
                logmsg("Socket bound to non-default port %d because original port was already in use.",
                       *port);
            }
            return fd;
        }
        if (errno != EADDRINUSE) {
            logmsg("WARNING: NET_OpenSocket: bind %s %d: %s", what, *port + off, strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (any) {
        socklen_t len = sizeof addr;
        addr.sin_port = 0;
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
            getsockname(fd, (struct sockaddr *)&addr, &len) == 0) {
            *port = ntohs(addr.sin_port);
            logmsg("%s port: any port, %d", what, *port);
            return fd;
        }
    }
    logmsg("WARNING: UDP_OpenSocket: unable to bind socket");
    logmsg("Couldn't allocate any %s IP port", what);
    close(fd);
    return -1;
}

static void cpu_list(char *out, size_t len)
{
    cpu_set_t set;
    size_t o = 0;
    out[0] = '\0';
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int c = 0; c < CPU_SETSIZE && o + 8 < len; c++)
        if (CPU_ISSET(c, &set))
            o += (size_t)snprintf(out + o, len - o, "%s%d", o ? "," : "", c);
}

/* NULL: every CPU the kernel knows; otherwise CPU 0 alone. */
static void *affinity_thread(void *arg)
{
    int only_cpu0 = arg != NULL;
    cpu_set_t set;
    char now[256];
    CPU_ZERO(&set);
    if (only_cpu0)
        CPU_SET(0, &set);
    else
        for (int c = 0; c < CPU_SETSIZE; c++)
            CPU_SET(c, &set);
    int rc = sched_setaffinity(0, sizeof set, &set);
    int err = errno;
    cpu_list(now, sizeof now);
    logmsg("affinity: thread asked for %s: %s; runs on CPUs %s", only_cpu0 ? "CPU 0" : "every CPU",
           rc == 0 ? "ok" : strerror(err), now);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    const char *game = NULL;
    int port = 27015, clientport = 27005, tvport = 27020, hltv = 1;
    char path[4096], hostname[256] = "left4me stand-in";

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-game") && i + 1 < argc)
            game = argv[++i];
        else if (!strcmp(argv[i], "+hostport") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "+clientport") && i + 1 < argc)
            clientport = atoi(argv[++i]);
        else if (!strcmp(argv[i], "+tv_port") && i + 1 < argc)
            tvport = atoi(argv[++i]);
        else if (!strcasecmp(argv[i], "-nohltv"))
            hltv = 0;
        else if (!strcmp(argv[i], "+map") && i + 1 < argc)
            snprintf(map, sizeof map, "%s", argv[++i]);
    }
    if (!game) {
        fprintf(stderr, "standin: no -game DIR given\n");
        return 2;
    }
    game_dir = game;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "standin: bad +hostport\n");
        return 2;
    }

    snprintf(path, sizeof path, "%s/crash", game);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "standin: %s present: crashing on purpose\n", path);
        return 3;
    }
    snprintf(path, sizeof path, "%s/gameinfo.txt", game);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "standin: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/cfg/server.cfg", game);
    read_hostname(path, hostname, sizeof hostname);

    snprintf(path, sizeof path, "%s/logs", game);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "standin: mkdir %s: %s\n", path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/logs/standin.log", game);
    logf = fopen(path, "a");
    if (!logf) {
        fprintf(stderr, "standin: open %s: %s\n", path, strerror(errno));
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: recvfrom must return EINTR */
    sigaction(SIGINT, &sa, NULL);

    /* NET_OpenSockets' order: server, client, SourceTV. */
    int fd = open_port("server", &port, 0);
    if (fd < 0)
        return 1;
    if (open_port("client", &clientport, 1) < 0)
        return 1;
    if (hltv && open_port("SourceTV", &tvport, 0) < 0)
        return 1;
    if (hltv)
        logmsg("ports: game %d, client %d, SourceTV %d", port, clientport, tvport);
    else
        logmsg("ports: game %d, client %d, SourceTV off (-nohltv)", port, clientport);
    /* SIGINT must reach the main thread's poll(), not a sleeping thread. */
    sigset_t intr, old;
    sigemptyset(&intr);
    sigaddset(&intr, SIGINT);
    pthread_sigmask(SIG_BLOCK, &intr, &old);
    pthread_t t;
    pthread_create(&t, NULL, affinity_thread, NULL);
    pthread_create(&t, NULL, affinity_thread, (void *)1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* Per-process challenge, as servers since the 2020 change require. */
    uint32_t challenge = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x5a5aa5a5u;
    logmsg("started pid=%d game=%s port=%d hostname=\"%s\" map=%s", (int)getpid(), game, port,
           hostname, map);
    steam_home();

    static const uint8_t query[] = "\xff\xff\xff\xffTSource Engine Query";
    const size_t qlen = sizeof query; /* includes the terminating NUL */
    int dropped_one = 0;
    while (!stop_requested) {
        if (!wait_for_query(fd))
            continue;
        uint8_t in[1400], out[1400];
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            logmsg("recvfrom: %s", strerror(errno));
            return 1;
        }
        if ((size_t)n < qlen || memcmp(in, query, qlen) != 0)
            continue;
        if (switch_on("hang"))
            hang_forever();
        stall(file_ms("stall"));
        steam_notice();
        uint32_t got;
        if ((size_t)n < qlen + 4 || (memcpy(&got, in + qlen, 4), got != challenge)) {
            uint8_t ch[9] = {0xff, 0xff, 0xff, 0xff, 'A'};
            memcpy(ch + 5, &challenge, 4);
            sendto(fd, ch, sizeof ch, 0, (struct sockaddr *)&peer, plen);
            continue;
        }
        size_t o = 0;
        const size_t cap = sizeof out;
        memcpy(out, "\xff\xff\xff\xff" "I", 5);
        o = 5;
        out[o++] = 17; /* protocol */
        o = put_str(out, o, cap, hostname);
        o = put_str(out, o, cap, map);
        const char *folder = strrchr(game, '/');
        o = put_str(out, o, cap, folder ? folder + 1 : game);
        o = put_str(out, o, cap, "Left 4 Dead 2");
        if (o + 9 > cap)
            continue;
        out[o++] = 550 & 0xff; /* app id, little endian */
        out[o++] = 550 >> 8;
        uint8_t players, bots;
        player_count(&players, &bots);
        out[o++] = players;
        out[o++] = 8;   /* max players */
        out[o++] = bots;
        out[o++] = 'd'; /* dedicated */
        out[o++] = 'l'; /* linux */
        out[o++] = 0;   /* public */
        out[o++] = 0;   /* not VAC secured */
        o = put_str(out, o, cap, "2.2.4.3");
        if (o + 3 > cap)
            continue;
        out[o++] = 0x80; /* EDF: port follows */
        out[o++] = (uint8_t)(port & 0xff);
        out[o++] = (uint8_t)(port >> 8);
        if (!dropped_one && switch_on("drop-one")) {
            dropped_one = 1;
            logmsg("drop-one: dropped this A2S_INFO answer");
            continue;
        }
        long delay = file_ms("slow");
        if (delay > 0) {
            struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested)
                ;
        }
        sendto(fd, out, o, 0, (struct sockaddr *)&peer, plen);
        if (delay > 0)
            logmsg("answered A2S_INFO after %ld ms (slow), %u players (%u bots)", delay,
                   players, bots);
        else
            logmsg("answered A2S_INFO, %u players (%u bots)", players, bots);
    }
    logmsg("SIGINT: shutting down");
    fclose(logf);
    return 0;
}
