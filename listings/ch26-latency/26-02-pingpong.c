// ANCHOR: whole
// Listing 26-2: the C reference for Listing 26-1, `bench-pingpong`: the
// same protocol, the same arguments, the same line of output, so that the
// benchmark command can run both side by side. Both keep every round
// trip's time in an array; where Rust then builds a histogram of them
// (the hdrhistogram crate), this program sorts the array. Compile it, from
// the top of the book's repository, beside the release build of Listing
// 26-1:
//
//     mkdir -p target/release
//     cc -O2 -o target/release/pingpong-c listings/ch26-latency/26-02-pingpong.c
//
// Every call is checked; an error ends the program with one line and
// status 1, as the Rust listing does.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *usage =
    "usage: pingpong [--via pipe|unix|tcp|signal|eventfd|shm] "
    "[--cpus same|different|any] [--wait block|spin] [--count N] "
    "[--size BYTES] [--times FILE]";

enum via { PIPE, UNIX, TCP, SIGNAL, EVENTFD, SHM };
static const char *via_names[] = {"pipe",   "unix",    "tcp",
                                   "signal", "eventfd", "shm"};

static const char *who = "pingpong";

// Round trips made, untimed, before the timed ones: WARM_UP in Listing
// 26-1.
#define WARM_UP 500

static void die(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", who, what, strerror(errno));
    exit(1);
}

static void fail(const char *message) {
    fprintf(stderr, "%s: %s\n", who, message);
    exit(1);
}

// ANCHOR: end
// A mailbox in shared memory: messages sent so far (a futex word too),
// and not 0 once the sender has stopped or died.
struct mailbox {
    _Atomic uint32_t sent, closed;
};

struct page {
    struct mailbox to_child, to_parent;
};

// One process's end of the channel. Streams (pipes, sockets) use `rx` and
// `tx` as descriptors, and `message` and `incoming` of `size` bytes;
// signals use `peer`; eventfds use `rx` and `tx`; shared memory uses
// `in` and `out`.
struct end {
    enum via via;
    int rx, tx, spin;
    pid_t peer;
    sigset_t waited_for;
    size_t size;
    unsigned char *message, *incoming, received;
    struct mailbox *in, *out;
    uint32_t seen;
};

static const uint64_t STOP = 2;
static const uint64_t CHILD_GONE = 1ULL << 32;
static volatile sig_atomic_t gone_fd = -1;
static struct page *volatile gone_page = NULL;

static void futex_wake(_Atomic uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, 1);
}

static void post(struct mailbox *m, int spin) {
    atomic_fetch_add_explicit(&m->sent, 1, memory_order_release);
    if (!spin) futex_wake(&m->sent);
}

static void close_mailbox(struct mailbox *m, uint32_t why) {
    atomic_store_explicit(&m->closed, why, memory_order_relaxed);
    post(m, 0);
}

static void child_gone(int sig) {
    (void)sig;
    int saved = errno;
    if (gone_fd >= 0) {
        uint64_t value = CHILD_GONE;
        ssize_t ignored = write(gone_fd, &value, sizeof value);
        (void)ignored;
    }
    if (gone_page != NULL) close_mailbox(&gone_page->to_parent, 2);
    errno = saved;
}

// Tells the CPU that this thread is waiting in a loop, as Rust's
// std::hint::spin_loop() does: PAUSE on x86, ISB on 64-bit Arm.
static inline void spin_loop(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("isb" ::: "memory");
#endif
}

// Whether a read or write that failed is simply made again: a signal
// came, or (with --wait spin) there was nothing to read, or no room.
// Before it is, the CPU is told that we wait, as in Listing 26-1.
static int retry(void) {
    if (errno != EINTR && errno != EAGAIN) return 0;
    spin_loop();
    return 1;
}

// Writes all of `buf`, retrying after a signal or a short write.
static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && retry()) continue;
        if (n < 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void send_message(struct end *e) {
    switch (e->via) {
    case PIPE: case UNIX: case TCP:
        if (write_all(e->tx, e->message, e->size) < 0) die("write");
        e->message[0]++;
        break;
    case SIGNAL:
        if (kill(e->peer, SIGUSR1) < 0) die("kill");
        break;
    case EVENTFD: {
        uint64_t one = 1;
        if (write_all(e->tx, &one, sizeof one) < 0) die("write");
        break;
    }
    case SHM:
        post(e->out, e->spin);
        break;
    }
}

// Waits for the other process's next message: 0 if it has stopped, or is
// gone, instead.
static int receive_message(struct end *e) {
    switch (e->via) {
    case PIPE: case UNIX: case TCP: {
        size_t got = 0;
        while (got < e->size) {
            ssize_t n = read(e->rx, e->incoming + got, e->size - got);
            if (n < 0 && retry()) continue;
            if (n < 0) die("read");
            if (n == 0 && got == 0) return 0;
            if (n == 0) fail("the stream ended inside a message");
            got += (size_t)n;
        }
        if (e->incoming[0] != e->received) fail("got an unexpected message");
        e->received++;
        return 1;
    }
    case SIGNAL: {
        int sig;
        errno = sigwait(&e->waited_for, &sig);
        if (errno != 0) die("sigwait");
        return sig == SIGUSR1;
    }
    case EVENTFD: {
        uint64_t value;
        ssize_t n;
        do n = read(e->rx, &value, sizeof value);
        while (n < 0 && retry());
        if (n != sizeof value) die("read");
        return value == 1;
    }
    case SHM: {
        uint32_t now;
        while ((now = atomic_load_explicit(&e->in->sent,
                                           memory_order_acquire)) == e->seen) {
            if (e->spin) {
                spin_loop();
                continue;
            }
            // Not FUTEX_PRIVATE_FLAG: the other process must meet us.
            // EAGAIN (the count changed already) or EINTR (a signal):
            // look again at once, as Listing 26-1 does.
            if (syscall(SYS_futex, &e->in->sent, FUTEX_WAIT, e->seen,
                        NULL) < 0 &&
                errno != EAGAIN && errno != EINTR)
                die("futex");
        }
        e->seen = now;
        return atomic_load_explicit(&e->in->closed, memory_order_relaxed) == 0;
    }
    }
    return 0;
}

static void stop(struct end *e) {
    switch (e->via) {
    case PIPE: case UNIX: case TCP:
        break;
    case SIGNAL:
        if (kill(e->peer, SIGUSR2) < 0) die("kill");
        break;
    case EVENTFD:
        gone_fd = -1;
        if (write_all(e->tx, &STOP, sizeof STOP) < 0) die("write");
        break;
    case SHM:
        close_mailbox(e->out, 1);
        break;
    }
    if (e->via != SIGNAL && e->via != SHM) {
        close(e->tx);
        if (e->rx != e->tx) close(e->rx);
    }
}
// ANCHOR_END: end

// ANCHOR: channel
// Both ends of a channel, made before the fork: descriptors [0] for the
// parent's end, [1] for the child's.
struct channel {
    enum via via;
    int rx[2], tx[2], spin;
    size_t size;
    struct page *page;
};

static void install_child_gone(void) {
    struct sigaction sa = {.sa_handler = child_gone};
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) < 0) die("sigaction");
    // As in Listing 26-1: a SIGCHLD blocked by our parent stays blocked
    // through exec, and would never run the handler.
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_UNBLOCK, &chld, NULL) < 0) die("sigprocmask");
}

static struct channel make_channel(enum via via, int spin, size_t size) {
    struct channel c = {.via = via, .rx = {-1, -1}, .tx = {-1, -1}};
    c.spin = spin, c.size = size;
    int to_child[2], to_parent[2], pair[2];
    int nonblock = spin ? SOCK_NONBLOCK : 0;
    switch (via) {
    case PIPE:
        if (pipe2(to_child, O_CLOEXEC | (spin ? O_NONBLOCK : 0)) < 0 ||
            pipe2(to_parent, O_CLOEXEC | (spin ? O_NONBLOCK : 0)) < 0)
            die("pipe");
        c.rx[0] = to_parent[0], c.tx[0] = to_child[1];
        c.rx[1] = to_child[0], c.tx[1] = to_parent[1];
        break;
    case UNIX:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | nonblock, 0,
                       pair) < 0)
            die("socketpair");
        c.rx[0] = c.tx[0] = pair[0];
        c.rx[1] = c.tx[1] = pair[1];
        break;
    case TCP: {
        struct sockaddr_in addr = {.sin_family = AF_INET};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        int one = 1;
        int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener < 0 || client < 0) die("socket");
        if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
            listen(listener, 1) < 0 ||
            getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
            die("listen");
        if (connect(client, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        int server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (server < 0) die("accept");
        close(listener);
        if (setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
            setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one))
            die("setsockopt");
        if (spin && (fcntl(client, F_SETFL, O_NONBLOCK) < 0 ||
                     fcntl(server, F_SETFL, O_NONBLOCK) < 0))
            die("fcntl");
        c.rx[0] = c.tx[0] = server;
        c.rx[1] = c.tx[1] = client;
        break;
    }
    case SIGNAL: {
        sigset_t blocked;
        sigemptyset(&blocked);
        sigaddset(&blocked, SIGUSR1);
        sigaddset(&blocked, SIGUSR2);
        sigaddset(&blocked, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &blocked, NULL) < 0) die("sigprocmask");
        // A SIGUSR1 or SIGUSR2 left pending by our parent: thrown away.
        if (signal(SIGUSR1, SIG_IGN) == SIG_ERR ||
            signal(SIGUSR1, SIG_DFL) == SIG_ERR ||
            signal(SIGUSR2, SIG_IGN) == SIG_ERR ||
            signal(SIGUSR2, SIG_DFL) == SIG_ERR)
            die("signal");
        // SIGCHLD only when the child ends, not when it stops or continues.
        struct sigaction ends_only = {.sa_handler = SIG_DFL};
        ends_only.sa_flags = SA_NOCLDSTOP;
        sigemptyset(&ends_only.sa_mask);
        if (sigaction(SIGCHLD, &ends_only, NULL) < 0) die("sigaction");
        break;
    }
    case EVENTFD: {
        int flags = EFD_CLOEXEC | (spin ? EFD_NONBLOCK : 0);
        c.rx[0] = c.tx[1] = eventfd(0, flags);
        c.rx[1] = c.tx[0] = eventfd(0, flags);
        if (c.rx[0] < 0 || c.rx[1] < 0) die("eventfd");
        gone_fd = c.rx[0];
        install_child_gone();
        break;
    }
    case SHM:
        c.page = mmap(NULL, sizeof *c.page, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (c.page == MAP_FAILED) die("mmap");
        gone_page = c.page;
        install_child_gone();
        break;
    }
    return c;
}

// This process's end (side 0: parent, 1: child); the other's is closed.
static struct end end_of(struct channel c, int side, pid_t peer) {
    struct end e = {.via = c.via, .rx = c.rx[side], .tx = c.tx[side]};
    e.peer = peer, e.spin = c.spin, e.size = c.size;
    if (c.via == PIPE || c.via == UNIX || c.via == TCP) {
        e.message = malloc(c.size);
        e.incoming = malloc(c.size);
        if (e.message == NULL || e.incoming == NULL) die("malloc");
        for (size_t i = 0; i < c.size; i++)
            e.message[i] = (unsigned char)(i % 251);
    }
    if (c.via == SHM) {
        e.in = side == 0 ? &c.page->to_parent : &c.page->to_child;
        e.out = side == 0 ? &c.page->to_child : &c.page->to_parent;
    }
    // Both processes use both eventfds, and signals have no descriptor.
    int other = 1 - side;
    if (c.via == PIPE) {
        close(c.rx[other]);
        close(c.tx[other]);
    } else if (c.via == UNIX || c.via == TCP) {
        close(c.rx[other]);
    }
    sigemptyset(&e.waited_for);
    sigaddset(&e.waited_for, SIGUSR1);
    sigaddset(&e.waited_for, side == 0 ? SIGCHLD : SIGUSR2);
    return e;
}
// ANCHOR_END: channel

// ANCHOR: placement
// The CPUs for the parent and the child; -1 leaves one to the scheduler.
static void choose_cpus(const char *cpus, int *parent, int *child) {
    cpu_set_t allowed;
    int usable[2], found = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0)
        die("sched_getaffinity");
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed)) usable[found++] = cpu;
    *parent = *child = -1;
    if (strcmp(cpus, "same") == 0) {
        *parent = *child = usable[0];
    } else if (strcmp(cpus, "different") == 0) {
        if (found < 2) fail("--cpus different needs two CPUs");
        *parent = usable[0], *child = usable[1];
    }
}

static void pin_to(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
}
// ANCHOR_END: placement

static uint64_t now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000 + (uint64_t)t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// The value at quantile q of n sorted times, in µs: the smallest that at
// least q of them do not exceed, as HdrHistogram reports it.
static double quantile(const uint64_t *sorted, long n, double q) {
    double at = q * (double)n;
    long rank = (long)at;
    if ((double)rank < at) rank++; // Rounded up.
    if (rank < 1) rank = 1;
    return (double)sorted[rank - 1] / 1000.0;
}

static void round_trip(struct end *e) {
    send_message(e);
    if (!receive_message(e)) fail("the child is gone");
}

// ANCHOR: main
static void child(struct channel c, pid_t parent, int cpu, long count) {
    who = "pingpong child";
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl");
    if (getppid() != parent) fail("the parent is gone");
    pin_to(cpu);
    struct end e = end_of(c, 1, parent);
    long answered = 0;
    while (receive_message(&e)) {
        send_message(&e);
        answered++;
    }
    if (answered != count + WARM_UP) fail("answered the wrong number of messages");
    _exit(0);
}

int main(int argc, char **argv) {
    static struct option options[] = {
        {"via", required_argument, 0, 'v'},
        {"cpus", required_argument, 0, 'c'},
        {"count", required_argument, 0, 'n'},
        {"wait", required_argument, 0, 'w'},
        {"size", required_argument, 0, 's'},
        {"times", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    enum via via = PIPE;
    const char *cpus = "same";
    long count = 200000, size = 1;
    const char *times_path = NULL;
    int opt, spin = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'v': {
            int found = -1;
            for (int i = 0; i < 6; i++)
                if (strcmp(optarg, via_names[i]) == 0) found = i;
            if (found < 0) fail(usage);
            via = (enum via)found;
            break;
        }
        case 'c':
            if (strcmp(optarg, "same") && strcmp(optarg, "different") &&
                strcmp(optarg, "any"))
                fail(usage);
            cpus = optarg;
            break;
        case 'n': {
            char *rest;
            errno = 0;
            count = strtol(optarg, &rest, 10);
            if (errno || *rest || rest == optarg || count < 1 ||
                count > 100000000)
                fail(usage);
            break;
        }
        case 's': {
            char *rest;
            errno = 0;
            size = strtol(optarg, &rest, 10);
            if (errno || *rest || rest == optarg || size < 1 ||
                size > 256 * 1024)
                fail(usage);
            break;
        }
        case 'w':
            if (strcmp(optarg, "block") && strcmp(optarg, "spin")) fail(usage);
            spin = strcmp(optarg, "spin") == 0;
            break;
        case 't':
            times_path = optarg;
            break;
        case 'h':
            printf("%s\n", usage);
            return 0;
        default:
            fail(usage);
        }
    }
    if (optind < argc) fail(usage);
    int stream = via == PIPE || via == UNIX || via == TCP;
    if (size != 1 && !stream) fail("--size is for pipe, unix and tcp");
    if (spin && via == SIGNAL) fail("--wait spin needs a descriptor or shm");
    if (spin && strcmp(cpus, "different") != 0)
        fail("--wait spin needs --cpus different");

    // Opened now, so that a path that cannot be written ends the program
    // before anything is measured; "e": close-on-exec.
    FILE *times_file = NULL;
    if (times_path != NULL && (times_file = fopen(times_path, "we")) == NULL)
        die(times_path);
    int parent_cpu, child_cpu;
    choose_cpus(cpus, &parent_cpu, &child_cpu);
    // As Listing 26-1's keep_zombies does: a SIGCHLD left ignored by our
    // parent would make the kernel reap the child, and waitpid fail.
    if (signal(SIGCHLD, SIG_DFL) == SIG_ERR) die("signal");
    struct channel c = make_channel(via, spin, (size_t)size);
    pid_t parent = getpid();
    pin_to(parent_cpu);
    // As the Rust runtime does before main: a write to a closed pipe or
    // socket then fails with EPIPE, and we say so, instead of dying
    // silently of SIGPIPE. The child inherits it.
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) die("signal");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) child(c, parent, child_cpu, count);

    struct end e = end_of(c, 0, pid);
    // Every round trip's time, in ns; touched before the clock starts.
    uint64_t *times = calloc((size_t)count, sizeof *times);
    if (times == NULL) die("calloc");
    memset(times, 1, (size_t)count * sizeof *times);
    struct rusage before, after, children;
    getrusage(RUSAGE_SELF, &before);
    for (int i = 0; i < WARM_UP; i++) round_trip(&e); // Untimed.
    uint64_t start = now(), last = start;
    for (long i = 0; i < count; i++) {
        round_trip(&e);
        uint64_t t = now();
        times[i] = t - last;
        last = t;
    }
    double elapsed = (double)(last - start) / 1e9;
    stop(&e);
    getrusage(RUSAGE_SELF, &after);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the child failed");
    getrusage(RUSAGE_CHILDREN, &children);
    long waits = after.ru_nvcsw - before.ru_nvcsw + children.ru_nvcsw;
    long preemptions =
        after.ru_nivcsw - before.ru_nivcsw + children.ru_nivcsw;
    // ANCHOR_END: main
    // Written after the clock stopped, in the order made, before the sort.
    if (times_file != NULL) {
        for (long i = 0; i < count; i++)
            fprintf(times_file, "%llu\n", (unsigned long long)times[i]);
        if (fclose(times_file) != 0) die(times_path);
    }

    char where[64];
    if (parent_cpu < 0)
        snprintf(where, sizeof where, "any CPU");
    else if (parent_cpu == child_cpu)
        snprintf(where, sizeof where, "CPU %d", parent_cpu);
    else
        snprintf(where, sizeof where, "CPUs %d and %d", parent_cpu, child_cpu);
    char message[32];
    if (via == SIGNAL)
        snprintf(message, sizeof message, "a signal");
    else if (via == EVENTFD)
        snprintf(message, sizeof message, "8 bytes");
    else if (via == SHM)
        snprintf(message, sizeof message, "a 4-byte count");
    else if (size == 1)
        snprintf(message, sizeof message, "1 byte");
    else
        snprintf(message, sizeof message, "%ld bytes", size);
    qsort(times, (size_t)count, sizeof *times, by_value);
    // The switches were counted over the warm-up too: shared out over
    // every round trip made, as Listing 26-1 does.
    long all = count + WARM_UP;
    // Measured: from here on, a filter, which SIGPIPE ends quietly.
    signal(SIGPIPE, SIG_DFL);
    printf("%s on %s%s: %ld round trips of %s; measured: %.6f s; µs per "
           "round trip: mean %.3f, p50 %.3f, p99 %.3f, p99.9 %.3f, max %.3f; "
           "%.2f waits and %.2f preemptions per round trip\n",
           via_names[via], where, spin ? ", spinning" : "", count, message,
           elapsed, elapsed * 1e6 / (double)count, quantile(times, count, 0.5),
           quantile(times, count, 0.99), quantile(times, count, 0.999),
           (double)times[count - 1] / 1000.0, (double)waits / (double)all,
           (double)preemptions / (double)all);
    // A line that cannot be written (a full disk) is an error like the
    // others. A closed standard output is not: Rust's standard library
    // treats it as a place that takes everything, and so does this twin.
    if (fflush(stdout) != 0 && errno != EBADF) die("standard output");
    return 0;
}
// ANCHOR_END: whole
