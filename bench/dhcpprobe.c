/*
 * dhcpprobe: a small DHCPv4 client population for bench/pool.sh (compiled there with the
 * system's cc). It acts as a relay agent on a shared segment, as perfdhcp does: every DISCOVER
 * and REQUEST goes to 255.255.255.255:67 out of IFACE with giaddr = GIADDR, so every server on
 * the segment hears it, and the servers answer GIADDR:67 by unicast.
 *
 *   dhcpprobe IFACE GIADDR RATE SECONDS MAC_PREFIX [SERVERS]
 *
 * Starts RATE new clients per second for SECONDS seconds. Client i has the MAC
 * 02:MAC_PREFIX:i (three bytes of counter) and asks for a new lease: DISCOVER, on the first
 * OFFER a REQUEST for that address and server, done on ACK. A client with no OFFER repeats
 * its DISCOVER every RETX_MS (secs field = seconds since its first try, as real clients do);
 * one with no ACK after three REQUESTs, or a NAK, starts over with a DISCOVER. Every client
 * still unanswered when the run ends is reported as such.
 *
 * With SERVERS (a number), it stops as soon as ACKs came from that many distinct servers
 * (option 54), exit 0; otherwise exit 1 at the end of SECONDS. A readiness check.
 *
 * Bounded: RATE <= 1000, SECONDS <= 600, MAC_PREFIX two hex bytes (e.g. 0a0b).
 * Prints on stdout one line per client that got its lease:
 *   ack client first_try_ms ack_ms tries server address
 * (address: the ACK's yiaddr; server: its option 54)
 * (ms since the run's start), one per client never answered:
 *   lost client first_try_ms - tries - -
 * and first, one line: start EPOCH_MS (the wall clock at the run's start, to line up with
 * events outside, such as a server's death).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RETX_MS 250
#define REQ_TRIES 3

enum state { DISCOVERING, REQUESTING, DONE };

struct client {
    enum state st;
    uint32_t xid;
    double first, last, ack;
    int tries, req_tries;
    struct in_addr offered, server;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int sock;
static struct in_addr giaddr;
static unsigned char prefix[2];
static double t0;

static void mac_of(unsigned i, unsigned char *mac) {
    mac[0] = 0x02;
    mac[1] = prefix[0];
    mac[2] = prefix[1];
    mac[3] = (i >> 16) & 0xff;
    mac[4] = (i >> 8) & 0xff;
    mac[5] = i & 0xff;
}

/* Sends client i's DISCOVER or REQUEST. */
static void send_msg(unsigned i, struct client *c, double now) {
    unsigned char p[300];
    memset(p, 0, sizeof p);
    p[0] = 1; /* BOOTREQUEST */
    p[1] = 1;
    p[2] = 6;
    p[3] = 1; /* hops: relayed once */
    uint32_t xid = htonl(c->xid);
    memcpy(p + 4, &xid, 4);
    unsigned secs = (unsigned)((now - c->first) / 1000);
    p[8] = (secs >> 8) & 0xff;
    p[9] = secs & 0xff;
    memcpy(p + 24, &giaddr, 4);
    mac_of(i, p + 28);
    static const unsigned char cookie[4] = {99, 130, 83, 99};
    memcpy(p + 236, cookie, 4);
    size_t o = 240;
    p[o++] = 53;
    p[o++] = 1;
    p[o++] = c->st == REQUESTING ? 3 : 1;
    if (c->st == REQUESTING) {
        p[o++] = 50;
        p[o++] = 4;
        memcpy(p + o, &c->offered, 4);
        o += 4;
        p[o++] = 54;
        p[o++] = 4;
        memcpy(p + o, &c->server, 4);
        o += 4;
    }
    p[o++] = 255;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(67)};
    dst.sin_addr.s_addr = htonl(INADDR_BROADCAST);
    if (sendto(sock, p, o < 300 ? 300 : o, 0, (struct sockaddr *)&dst, sizeof dst) < 0 &&
        errno != ENOBUFS && errno != EAGAIN)
        die("sendto");
    c->last = now;
    c->tries++;
}

/* Finds option CODE in a reply's options; its value's length in *len. */
static const unsigned char *option(const unsigned char *p, ssize_t n, int code, int *len) {
    ssize_t o = 240;
    while (o < n) {
        int k = p[o];
        if (k == 255) break;
        if (k == 0) {
            o++;
            continue;
        }
        if (o + 1 >= n || o + 2 + p[o + 1] > n) break;
        if (k == code) {
            *len = p[o + 1];
            return p + o + 2;
        }
        o += 2 + p[o + 1];
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: %s IFACE GIADDR RATE SECONDS MAC_PREFIX [SERVERS]\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[3]), secs = atof(argv[4]);
    unsigned pfx;
    if (inet_pton(AF_INET, argv[2], &giaddr) != 1 || !(rate > 0 && rate <= 1000) ||
        !(secs > 0 && secs <= 600) || strlen(argv[5]) != 4 || sscanf(argv[5], "%4x", &pfx) != 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    prefix[0] = pfx >> 8;
    prefix[1] = pfx & 0xff;
    int want_servers = argc == 7 ? atoi(argv[6]) : 0;

    sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (sock < 0) die("socket");
    int one = 1;
    if (setsockopt(sock, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0) die("SO_BROADCAST");
    if (setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR");
    if (setsockopt(sock, SOL_SOCKET, SO_BINDTODEVICE, argv[1], strlen(argv[1])) < 0)
        die("SO_BINDTODEVICE");
    int rcvbuf = 4 << 20;
    setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons(67)};
    me.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(sock, (struct sockaddr *)&me, sizeof me) < 0) die("bind");

    unsigned total = (unsigned)(rate * secs);
    struct client *cl = calloc(total + 1, sizeof *cl);
    if (!cl) die("calloc");
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    printf("start %lld\n", (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
    t0 = now_ms();
    double end = t0 + secs * 1000;
    unsigned started = 0, active_lo = 0;
    uint32_t seen[64];
    int nseen = 0;
    uint32_t xbase = ((uint32_t)pfx << 16) ^ (uint32_t)getpid() << 24;

    for (;;) {
        double now = now_ms();
        if (now >= end) break;
        /* New clients at the rate asked. */
        unsigned due = (unsigned)((now - t0) / 1000 * rate);
        if (due > total) due = total;
        while (started < due) {
            struct client *c = &cl[started];
            c->xid = xbase + started;
            c->first = now;
            c->st = DISCOVERING;
            send_msg(started, c, now);
            started++;
        }
        /* Retransmissions. */
        while (active_lo < started && cl[active_lo].st == DONE) active_lo++;
        for (unsigned i = active_lo; i < started; i++) {
            struct client *c = &cl[i];
            if (c->st == DONE || now - c->last < RETX_MS) continue;
            if (c->st == REQUESTING && c->req_tries >= REQ_TRIES) c->st = DISCOVERING;
            if (c->st == REQUESTING) c->req_tries++;
            send_msg(i, c, now);
        }
        struct pollfd pf = {.fd = sock, .events = POLLIN};
        poll(&pf, 1, 2);
        unsigned char p[1500];
        ssize_t n;
        while ((n = recv(sock, p, sizeof p, 0)) > 0) {
            if (n < 244 || p[0] != 2) continue;
            uint32_t xid;
            memcpy(&xid, p + 4, 4);
            xid = ntohl(xid) - xbase;
            if (xid >= started) continue;
            struct client *c = &cl[xid];
            int len = 0;
            const unsigned char *t = option(p, n, 53, &len);
            const unsigned char *sid = option(p, n, 54, &len);
            if (!t || !sid || len != 4) continue;
            now = now_ms();
            if (*t == 2 && c->st == DISCOVERING) { /* OFFER: take the first */
                memcpy(&c->offered, p + 16, 4);
                memcpy(&c->server, sid, 4);
                c->st = REQUESTING;
                c->req_tries = 1;
                send_msg(xid, c, now);
            } else if (*t == 5 && c->st == REQUESTING && !memcmp(sid, &c->server, 4)) {
                c->st = DONE;
                c->ack = now;
                memcpy(&c->offered, p + 16, 4); /* the address ACKed (yiaddr) */
                uint32_t s;
                memcpy(&s, sid, 4);
                int k;
                for (k = 0; k < nseen && seen[k] != s; k++)
                    ;
                if (k == nseen && nseen < 64) seen[nseen++] = s;
            } else if (*t == 6 && c->st == REQUESTING && !memcmp(sid, &c->server, 4)) {
                c->st = DISCOVERING; /* NAK: start over */
            }
        }
        if (want_servers && nseen >= want_servers) break;
    }
    for (unsigned i = 0; i < started; i++) {
        struct client *c = &cl[i];
        unsigned char mac[6];
        mac_of(i, mac);
        char m[18], srv[16], addr[16];
        snprintf(m, sizeof m, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                 mac[4], mac[5]);
        if (c->st == DONE) {
            inet_ntop(AF_INET, &c->server, srv, sizeof srv);
            inet_ntop(AF_INET, &c->offered, addr, sizeof addr);
            printf("ack %s %.1f %.1f %d %s %s\n", m, c->first - t0, c->ack - t0, c->tries, srv,
                   addr);
        } else {
            printf("lost %s %.1f - %d - -\n", m, c->first - t0, c->tries);
        }
    }
    return want_servers && nseen < want_servers ? 1 : 0;
}
