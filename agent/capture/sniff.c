/*
 * mirrord-sniff: the packets a port receives, for passive mirroring (agent/src/incoming/sniff.ts).
 *
 * Why a helper: Node cannot open an AF_PACKET socket, and a copy taken from the packets (rather
 * than from a redirected connection) leaves the target's own connections untouched: its clients
 * keep talking to it directly, and nothing they do depends on the agent being alive.
 *
 * The socket is cooked (SOCK_DGRAM: each packet starts at its IP header) and listens on every
 * interface of the network namespace it runs in. A classic BPF program in the kernel keeps only
 * TCP segments to the port that this host receives (copies of outgoing packets are dropped, so a
 * loopback connection is seen once), so the agent never reads the rest of the namespace's traffic.
 * The filter is attached before the socket is bound: no packet of another port is ever queued.
 *
 * Output on stdout: one frame per packet but pure ACKs, a 4-byte big-endian length then the IP packet; a first
 * empty frame says the capture is live. When the agent falls behind, the kernel drops packets at
 * the socket (the target is never slowed down); the agent sees the gap and gives up that copy.
 *
 * Usage: mirrord-sniff PORT. Ends when stdout closes or the parent dies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Big enough for a GRO-merged segment; a longer one is truncated and the agent sees a gap. */
#define SNAP 262144
#define OUT_CAP (1 << 20)
#define RCVBUF (8 << 20)

static unsigned char pkt[SNAP];
static unsigned char out[OUT_CAP];
static size_t out_len;

static int flush_out(void)
{
    size_t off = 0;
    while (off < out_len) {
        ssize_t n = write(STDOUT_FILENO, out + off, out_len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    out_len = 0;
    return 0;
}

static int emit(const unsigned char *data, size_t len)
{
    if (out_len + 4 + len > OUT_CAP && flush_out() != 0) return -1;
    uint32_t be = htonl((uint32_t)len);
    memcpy(out + out_len, &be, 4);
    if (len) memcpy(out + out_len + 4, data, len);
    out_len += 4 + len;
    return 0;
}

/*
 * A pure ACK (no payload, no SYN/FIN/RST) tells the reassembler nothing about the client's bytes:
 * about half of a request/response exchange's packets, not worth a write and a decode.
 */
static int pure_ack(const unsigned char *p, size_t len)
{
    size_t ip, total;
    if (len < 20) return 0;
    if ((p[0] >> 4) == 4) {
        ip = (size_t)(p[0] & 15) * 4;
        total = ((size_t)p[2] << 8) | p[3];
    } else if ((p[0] >> 4) == 6) {
        ip = 40;
        total = 40 + (((size_t)p[4] << 8) | p[5]);
    } else {
        return 0;
    }
    if (total > len) total = len;
    if (total < ip + 20) return 0;
    size_t tcp = (size_t)(p[ip + 12] >> 4) * 4;
    int flags = p[ip + 13];
    return (flags & 0x07) == 0 && total <= ip + tcp;
}

static int attach_filter(int fd, uint16_t port)
{
    /* Offsets are from the IP header (cooked socket). Jump targets are counted from the next insn. */
    struct sock_filter code[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 15, 0),
        /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
        /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 1, 0),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 7, 12),
        /* 5: IPv4, TCP, first fragment only, destination port from the variable header length */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
        /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 10),
        /* 7 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),
        /* 8 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 8, 0),
        /* 9 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
        /* 10 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),
        /* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 4, 5),
        /* 12: IPv6 without extension headers, TCP */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),
        /* 13 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 3),
        /* 14 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 42),
        /* 15 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 1),
        /* 16 */ BPF_STMT(BPF_RET | BPF_K, SNAP),
        /* 17 */ BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = { .len = sizeof code / sizeof code[0], .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || !end || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: mirrord-sniff PORT\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);
    /* Protocol 0: the socket receives nothing until it is bound, after the filter is in place. */
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "mirrord-sniff: socket(AF_PACKET): %s (the agent needs NET_RAW)\n", strerror(errno));
        return 1;
    }
    if (attach_filter(fd, (uint16_t)port) != 0) {
        fprintf(stderr, "mirrord-sniff: attaching the port filter: %s\n", strerror(errno));
        return 1;
    }
    int rcvbuf = RCVBUF;
    /* FORCE passes net.core.rmem_max with NET_ADMIN; without it the plain option is capped. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = 0 };
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        fprintf(stderr, "mirrord-sniff: bind: %s\n", strerror(errno));
        return 1;
    }
    if (emit(NULL, 0) != 0 || flush_out() != 0) return 0;
    for (;;) {
        ssize_t n = recv(fd, pkt, sizeof pkt, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "mirrord-sniff: recv: %s\n", strerror(errno));
            return 1;
        }
        if (!pure_ack(pkt, (size_t)n) && emit(pkt, (size_t)n) != 0) return 0;
        /* Drain what is queued before writing: one write for a burst of segments. */
        while (out_len < OUT_CAP / 2) {
            n = recv(fd, pkt, sizeof pkt, MSG_DONTWAIT);
            if (n < 0) break;
            if (!pure_ack(pkt, (size_t)n) && emit(pkt, (size_t)n) != 0) return 0;
        }
        if (flush_out() != 0) return 0;
    }
}
