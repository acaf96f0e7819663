/*
 * ntpload: a bounded NTP load client for bench/ntp.sh (compiled there with the system's cc).
 *
 *   ntpload SERVER PORT RATE SECONDS SRC_BASE NSRC [DRAIN_MS]
 *
 * Sends NTPv4 client requests (mode 3, 48 bytes) to SERVER:PORT at RATE per second for SECONDS
 * seconds, paced against the monotonic clock (in bursts of at most 64 when behind), then keeps
 * receiving for DRAIN_MS (1000) ms. Request i comes from source address SRC_BASE + (i mod NSRC)
 * (IP_PKTINFO on one wildcard-bound socket with IP_FREEBIND: the addresses must route back to
 * this host, e.g. `ip route add local 198.19.0.0/16 dev lo`), so that a server's per-address
 * rate limit sees NSRC clients; NSRC = 0 sends from the socket's own address. Its transmit
 * timestamp carries a tag and i; a reply counts once if it is mode 4 and its origin timestamp
 * echoes a request's (a kiss-o'-death RATE, stratum 0, is counted apart).
 *
 * Bounded: at most RATE * SECONDS requests (RATE <= 2,000,000, SECONDS <= 300), then exits.
 * Prints one line:
 *   sent answered kod other send_blocked elapsed_s mean_rtt_us user_s sys_s
 * (other = mode-4 replies that echo no request of ours or repeat one; send_blocked = times the
 * socket buffer was full, i.e. the client could not send at the rate asked).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define TAG 0x6472766bU /* "drvk" in the seconds field of the transmit timestamp */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 7 || argc > 8) {
        fprintf(stderr, "usage: %s SERVER PORT RATE SECONDS SRC_BASE NSRC [DRAIN_MS]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    struct in_addr base;
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1 || inet_pton(AF_INET, argv[5], &base) != 1) {
        fprintf(stderr, "bad address\n");
        return 2;
    }
    double rate = atof(argv[3]), secs = atof(argv[4]);
    long nsrc = atol(argv[6]);
    double drain = argc > 7 ? atof(argv[7]) / 1000 : 1.0;
    if (rate <= 0 || rate > 2e6 || secs <= 0 || secs > 300 || nsrc < 0 || nsrc > (1L << 24) ||
        drain < 0 || drain > 10) {
        fprintf(stderr, "out of bounds: 0 < RATE <= 2e6, 0 < SECONDS <= 300, 0 <= NSRC <= 2^24, DRAIN_MS <= 10000\n");
        return 2;
    }
    uint64_t total = (uint64_t)(rate * secs);
    uint32_t *sent_us = calloc(total + 1, sizeof *sent_us); /* send time, µs after start */
    uint8_t *seen = calloc(total + 1, 1);
    if (!sent_us || !seen)
        die("calloc");

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    int one = 1, buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (nsrc > 0 && setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) < 0)
        die("IP_FREEBIND");
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (bind(fd, (struct sockaddr *)&any, sizeof any) < 0)
        die("bind");

    static uint8_t req[BATCH][48], rsp[BATCH][68];
    static char ctl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
    static struct mmsghdr out[BATCH], in[BATCH];
    static struct iovec oiov[BATCH], iiov[BATCH];
    for (int k = 0; k < BATCH; k++) {
        oiov[k] = (struct iovec){req[k], 48};
        iiov[k] = (struct iovec){rsp[k], sizeof rsp[k]};
        in[k].msg_hdr = (struct msghdr){.msg_iov = &iiov[k], .msg_iovlen = 1};
    }

    uint64_t sent = 0, answered = 0, kod = 0, other = 0, blocked = 0;
    double rtt_sum = 0;
    double t0 = now_s(), end = t0 + secs, stop = end + drain;
    for (;;) {
        double t = now_s();
        if (t >= stop)
            break;
        /* Send what is due, in bursts. */
        if (t < end && sent < total) {
            uint64_t due = (uint64_t)((t - t0) * rate) + 1;
            if (due > total)
                due = total;
            while (sent < due) {
                int n = 0;
                for (; n < BATCH && sent + n < due; n++) {
                    uint64_t i = sent + n;
                    uint8_t *p = req[n];
                    memset(p, 0, 48);
                    p[0] = (0 << 6) | (4 << 3) | 3; /* LI 0, VN 4, mode 3 */
                    p[2] = 6;                       /* poll 2^6 */
                    p[3] = 0xec;                    /* precision 2^-20 */
                    uint32_t hi = htonl(TAG), lo = htonl((uint32_t)i);
                    memcpy(p + 40, &hi, 4);
                    memcpy(p + 44, &lo, 4);
                    out[n].msg_hdr = (struct msghdr){
                        .msg_name = &dst, .msg_namelen = sizeof dst, .msg_iov = &oiov[n], .msg_iovlen = 1};
                    if (nsrc > 0) {
                        struct msghdr *h = &out[n].msg_hdr;
                        h->msg_control = ctl[n];
                        h->msg_controllen = sizeof ctl[n];
                        struct cmsghdr *c = CMSG_FIRSTHDR(h);
                        c->cmsg_level = IPPROTO_IP;
                        c->cmsg_type = IP_PKTINFO;
                        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
                        struct in_pktinfo pi = {0};
                        pi.ipi_spec_dst.s_addr = htonl(ntohl(base.s_addr) + (uint32_t)(i % nsrc));
                        memcpy(CMSG_DATA(c), &pi, sizeof pi);
                    }
                    sent_us[i] = (uint32_t)((now_s() - t0) * 1e6);
                }
                int m = sendmmsg(fd, out, n, 0);
                if (m < 0) {
                    if (errno == EAGAIN || errno == ENOBUFS) {
                        blocked++;
                        break;
                    }
                    die("sendmmsg");
                }
                sent += m;
                if (m < n) {
                    blocked++;
                    break;
                }
            }
        }
        /* Receive what has come. */
        for (;;) {
            int m = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
            if (m < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    break;
                die("recvmmsg");
            }
            double rt = now_s();
            for (int k = 0; k < m; k++) {
                uint8_t *p = rsp[k];
                uint32_t hi, lo;
                if (in[k].msg_len < 48 || (p[0] & 7) != 4) {
                    other++;
                    continue;
                }
                memcpy(&hi, p + 24, 4);
                memcpy(&lo, p + 28, 4);
                uint64_t i = ntohl(lo);
                if (ntohl(hi) != TAG || i >= sent || seen[i]) {
                    other++;
                    continue;
                }
                seen[i] = 1;
                if (p[1] == 0 && memcmp(p + 12, "RATE", 4) == 0) {
                    kod++;
                } else {
                    answered++;
                    rtt_sum += (rt - t0) * 1e6 - sent_us[i];
                }
            }
            if (m < BATCH)
                break;
        }
        /* Wait for replies, or for the next request's time. */
        double next = (t < end && sent < total) ? t0 + (sent + 1) / rate : stop;
        double wait = next - now_s();
        if (wait > 0) {
            if (wait > 0.001)
                wait = 0.001;
            struct timespec ts = {0, (long)(wait * 1e9)};
            struct pollfd pfd = {fd, POLLIN, 0};
            ppoll(&pfd, 1, &ts, NULL);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%llu %llu %llu %llu %llu %.3f %.1f %.2f %.2f\n", (unsigned long long)sent,
           (unsigned long long)answered, (unsigned long long)kod, (unsigned long long)other,
           (unsigned long long)blocked, now_s() - t0 - drain, answered ? rtt_sum / answered : 0,
           ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6, ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    return 0;
}
