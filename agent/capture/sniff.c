/*
 * mirrord-sniff: the packets a port receives, for passive mirroring (agent/src/incoming/sniff.ts).
 *
 * Why a helper: Node cannot open an AF_PACKET socket, and a copy taken from the packets (rather
 * than from a redirected connection) leaves the target's own connections untouched: its clients
 * keep talking to it directly, and nothing they do depends on the agent being alive.
 *
 * The socket is cooked (SOCK_DGRAM: each packet starts at its IP header) and listens on every
 * interface of the network namespace it runs in. A classic BPF program in the kernel keeps only
 * TCP segments to the port that this host receives and that carry something for the reassembler
 * (payload, SYN, FIN or RST: pure ACKs, about half of a request/response exchange, are dropped in
 * the kernel; copies of outgoing packets too, so a loopback connection is seen once), so the agent
 * never reads the rest of the namespace's traffic. The filter is attached before the socket is
 * bound: no packet of another port is ever queued.
 *
 * The cost to the target is what matters (its CPU is the agent's), so:
 * - outgoing packets are ignored before the kernel clones them for the socket (PACKET_IGNORE_OUTGOING);
 * - packets land in a TPACKET_V3 ring shared with the kernel: no system call per packet, and the
 *   agent gets them in batches of FLUSH_MS, one write each;
 * - the helper runs under SCHED_IDLE (and nice 19 where that is refused): a busy target always wins
 *   the CPU, and the ring holds what arrives meanwhile; the helper, and the agent behind it, catch
 *   up when the target leaves a core idle. Only a target busy for longer than the ring lasts loses
 *   copies, never its own traffic: the kernel drops the packet at the ring (the helper says so on
 *   stderr, "dropped N packets"), and the agent sees the gap and gives up that copy.
 *
 * Output on stdout: one frame per packet, a 4-byte big-endian length then the IP packet, many per
 * write; a first empty frame says the capture is live.
 *
 * Usage: mirrord-sniff PORT. Ends when stdout closes or the parent dies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Big enough for a GRO-merged segment; a longer one is truncated and the agent sees a gap. */
#define SNAP 262144
/*
 * The ring: RING_BLOCKS blocks of BLOCK_SIZE (32 MiB). A block goes to the helper when full, or
 * RETIRE_MS after its first packet: at low rates every block holds a few packets only, so the ring
 * lasts at least RING_BLOCKS * RETIRE_MS (about 2.5 s) of a starved helper, and at high rates 32 MiB
 * of packets (some 100,000 small requests). A block holds the largest (GRO-merged) segment.
 */
#define BLOCK_SIZE (256u << 10)
#define RING_BLOCKS 128u
#define FRAME_SIZE 2048u
#define RETIRE_MS 20
/*
 * The agent gets the packets at most every FLUSH_MS: its cost is mostly per batch and connection
 * (one link frame each), so fewer, larger batches cost the target less; a copy lags by about this.
 */
#define FLUSH_MS 50
#define IOV_MAX_BATCH 512
/* How often the kernel's count of packets dropped at the ring is read (and reported on stderr). */
#define STATS_EVERY_MS 1000

/* One write for many packets: each frame's length header and its bytes, straight from the ring. */
static struct iovec iov[IOV_MAX_BATCH * 2];
static uint32_t lens[IOV_MAX_BATCH];
static int niov;

static int flush_out(void)
{
    struct iovec *v = iov;
    int left = niov;
    while (left > 0) {
        ssize_t n = writev(STDOUT_FILENO, v, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        while (left > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            left--;
        }
        if (left > 0) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    niov = 0;
    return 0;
}

/* The frame's bytes must stay put until the next flush (they point into the ring). */
static int emit(const void *data, uint32_t len)
{
    if (niov + 2 > IOV_MAX_BATCH * 2 && flush_out() != 0) return -1;
    uint32_t *be = &lens[niov / 2];
    *be = htonl(len);
    iov[niov++] = (struct iovec){ .iov_base = be, .iov_len = 4 };
    iov[niov++] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
    return 0;
}

/* Jump targets by instruction index (the kernel counts them from the next instruction). */
#define JUMP(at, op, k, t, f) BPF_JUMP(BPF_JMP | (op), (k), (t) - (at)-1, (f) - (at)-1)
enum { ACCEPT = 36, DROP = 37, V6 = 23 };

static int attach_filter(int fd, uint16_t port)
{
    /* Offsets are from the IP header (cooked socket). */
    struct sock_filter code[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
        /* 1 */ JUMP(1, BPF_JEQ | BPF_K, PACKET_OUTGOING, DROP, 2),
        /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PROTOCOL)),
        /* 3 */ JUMP(3, BPF_JEQ | BPF_K, ETH_P_IP, 5, 4),
        /* 4 */ JUMP(4, BPF_JEQ | BPF_K, ETH_P_IPV6, V6, DROP),
        /* IPv4: TCP, first fragment only, the port from the variable header length */
        /* 5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
        /* 6 */ JUMP(6, BPF_JEQ | BPF_K, IPPROTO_TCP, 7, DROP),
        /* 7 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),
        /* 8 */ JUMP(8, BPF_JSET | BPF_K, 0x1fff, DROP, 9),
        /* 9 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
        /* 10 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),
        /* 11 */ JUMP(11, BPF_JEQ | BPF_K, port, 12, DROP),
        /* SYN, FIN or RST: kept */
        /* 12 */ BPF_STMT(BPF_LD | BPF_B | BPF_IND, 13),
        /* 13 */ JUMP(13, BPF_JSET | BPF_K, 0x07, ACCEPT, 14),
        /* payload = total length - IP header - TCP header; none: a pure ACK. A total length of 0
           (a GSO packet past 64 KiB) wraps to a large number and is kept. */
        /* 14 */ BPF_STMT(BPF_LD | BPF_B | BPF_IND, 12),
        /* 15 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 2),
        /* 16 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x3c),
        /* 17 */ BPF_STMT(BPF_ST, 0),
        /* 18 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 2),
        /* 19 */ BPF_STMT(BPF_ALU | BPF_SUB | BPF_X, 0),
        /* 20 */ BPF_STMT(BPF_LDX | BPF_MEM, 0),
        /* 21 */ BPF_STMT(BPF_ALU | BPF_SUB | BPF_X, 0),
        /* 22 */ JUMP(22, BPF_JGT | BPF_K, 0, ACCEPT, DROP),
        /* IPv6 without extension headers: TCP, the port, then as above */
        /* 23 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 6),
        /* 24 */ JUMP(24, BPF_JEQ | BPF_K, IPPROTO_TCP, 25, DROP),
        /* 25 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 42),
        /* 26 */ JUMP(26, BPF_JEQ | BPF_K, port, 27, DROP),
        /* 27 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 53),
        /* 28 */ JUMP(28, BPF_JSET | BPF_K, 0x07, ACCEPT, 29),
        /* 29 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 52),
        /* 30 */ BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 2),
        /* 31 */ BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x3c),
        /* 32 */ BPF_STMT(BPF_MISC | BPF_TAX, 0),
        /* 33 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 4),
        /* 34 */ BPF_STMT(BPF_ALU | BPF_SUB | BPF_X, 0),
        /* 35 */ JUMP(35, BPF_JGT | BPF_K, 0, ACCEPT, DROP),
        /* 36 ACCEPT */ BPF_STMT(BPF_RET | BPF_K, SNAP),
        /* 37 DROP */ BPF_STMT(BPF_RET | BPF_K, 0),
    };
    _Static_assert(sizeof code / sizeof code[0] == DROP + 1, "the jump targets count the instructions");
    struct sock_fprog prog = { .len = sizeof code / sizeof code[0], .filter = code };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

/* Packets the kernel dropped at the ring since the last call (reading the counters resets them). */
static void report_drops(int fd)
{
    struct tpacket_stats_v3 st;
    socklen_t len = sizeof st;
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0 && st.tp_drops > 0)
        fprintf(stderr, "mirrord-sniff: dropped %u packets: the ring was full\n", st.tp_drops);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Below every normal process: the target's own work comes first. */
static void lower_priority(void)
{
    struct sched_param sp = { .sched_priority = 0 };
    if (sched_setscheduler(0, SCHED_IDLE, &sp) != 0) setpriority(PRIO_PROCESS, 0, 19);
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 2 || !end || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: mirrord-sniff PORT\n");
        return 2;
    }
    const unsigned blocks = RING_BLOCKS;
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
    /* Outgoing packets (the target's answers) are not even cloned for this socket (Linux 4.20+;
       the filter drops them where the option is missing). */
    int one = 1;
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    int version = TPACKET_V3;
    struct tpacket_req3 req = {
        .tp_block_size = BLOCK_SIZE,
        .tp_block_nr = blocks,
        .tp_frame_size = FRAME_SIZE,
        .tp_frame_nr = BLOCK_SIZE / FRAME_SIZE * blocks,
        .tp_retire_blk_tov = RETIRE_MS,
    };
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0 ||
        setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
        fprintf(stderr, "mirrord-sniff: a %u KiB TPACKET_V3 ring: %s\n", blocks * (BLOCK_SIZE >> 10), strerror(errno));
        return 1;
    }
    size_t ring_len = (size_t)blocks * BLOCK_SIZE;
    unsigned char *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (ring == MAP_FAILED) {
        fprintf(stderr, "mirrord-sniff: mapping the ring: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = 0 };
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        fprintf(stderr, "mirrord-sniff: bind: %s\n", strerror(errno));
        return 1;
    }
    static const unsigned char zero[4];
    if (write(STDOUT_FILENO, zero, 4) != 4) return 0;
    lower_priority();
    struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLERR };
    uint64_t stats_at = now_ms() + STATS_EVERY_MS, flushed_at = 0;
    for (unsigned cur = 0;;) {
        if (now_ms() >= stats_at) {
            report_drops(fd);
            stats_at = now_ms() + STATS_EVERY_MS;
        }
        struct tpacket_block_desc *b = (struct tpacket_block_desc *)(ring + (size_t)cur * BLOCK_SIZE);
        if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            if (poll(&pfd, 1, STATS_EVERY_MS) < 0 && errno != EINTR) {
                fprintf(stderr, "mirrord-sniff: poll: %s\n", strerror(errno));
                return 1;
            }
            continue;
        }
        /* Packets keep coming into the ring while the helper waits for the next batch. */
        uint64_t now = now_ms();
        if (now < flushed_at + FLUSH_MS) {
            struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(flushed_at + FLUSH_MS - now) * 1000000L };
            nanosleep(&ts, NULL);
        }
        /* Every block the kernel has handed over, written out before any goes back to it. */
        unsigned first = cur, taken = 0;
        while (taken < blocks && (__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            const unsigned char *p = (const unsigned char *)b + b->hdr.bh1.offset_to_first_pkt;
            for (uint32_t i = 0; i < b->hdr.bh1.num_pkts; i++) {
                const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)p;
                if (emit(p + h->tp_net, h->tp_snaplen) != 0) return 0;
                p += h->tp_next_offset;
            }
            taken++;
            cur = (cur + 1) % blocks;
            b = (struct tpacket_block_desc *)(ring + (size_t)cur * BLOCK_SIZE);
        }
        if (flush_out() != 0) return 0;
        flushed_at = now_ms();
        for (unsigned i = 0; i < taken; i++) {
            struct tpacket_block_desc *done = (struct tpacket_block_desc *)(ring + (size_t)((first + i) % blocks) *
                                                                                       BLOCK_SIZE);
            __atomic_store_n(&done->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        }
    }
}
