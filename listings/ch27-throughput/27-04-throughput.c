// ANCHOR: whole
// Listing 27-4: the C reference for Listing 27-2, `bench-throughput`: the
// same protocol, the same arguments, the same line of output. Compile it,
// from the top of the book's repository, beside the release build of
// Listing 27-2:
//
//     mkdir -p target/release
//     cc -O2 -o target/release/throughput-c listings/ch27-throughput/27-04-throughput.c
//
// Every call is checked; an error ends the program with one line and
// status 1, as the Rust listing does.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *usage =
    "usage: throughput [--via pipe|unix|tcp|vmsplice|splice] "
    "[--cpus same|different|any] [--bytes N] [--chunk N] [--pipe-size N] "
    "[--huge]";

enum via { PIPE, UNIX, TCP, VMSPLICE, SPLICE };
static const char *via_names[] = {"pipe", "unix", "tcp", "vmsplice", "splice"};

static const char *who = "throughput";

static void die(const char *what) {
    fprintf(stderr, "%s: %s: %s\n", who, what, strerror(errno));
    exit(1);
}

static void fail(const char *message) {
    fprintf(stderr, "%s: %s\n", who, message);
    exit(1);
}

static const size_t HUGE_PAGE = 2 << 20;

// `len` bytes of a pattern, at a page boundary (a huge page's, and in
// transparent huge pages if the kernel has them, with `huge`).
static char *pattern(size_t len, int huge) {
    size_t align = huge ? HUGE_PAGE : (size_t)sysconf(_SC_PAGESIZE);
    size_t size = (len + align - 1) / align * align;
    char *buffer = aligned_alloc(align, size);
    if (buffer == NULL) die("aligned_alloc");
    if (huge && madvise(buffer, size, MADV_HUGEPAGE) < 0) die("madvise");
    for (size_t i = 0; i < len; i++) buffer[i] = (char)(i % 251);
    return buffer;
}

// ANCHOR: send
// The sender's buffers: the ring of Listing 27-2, one buffer more than
// fills the pipe, for vmsplice; one buffer for write.
static size_t ring_buffers(int fd, enum via via, size_t chunk) {
    if (via != VMSPLICE && via != SPLICE) return 1;
    int capacity = fcntl(fd, F_GETPIPE_SZ);
    if (capacity < 0) die("fcntl");
    return ((size_t)capacity + chunk - 1) / chunk + 1;
}

// Sends `total` bytes in writes of at most `chunk` from the `buffers`
// buffers of `ring`, each chunk stamped with its number; returns the
// number of write (or vmsplice) calls.
static long send_all(int fd, enum via via, uint64_t total, size_t chunk,
                     char *ring, size_t buffers) {
    uint64_t sent = 0, number = 0;
    long writes = 0;
    while (sent < total) {
        size_t len = total - sent < chunk ? (size_t)(total - sent) : chunk;
        char *buffer = ring + (number % buffers) * chunk;
        buffer[0] = (char)number;
        size_t done = 0;
        while (done < len) {
            ssize_t n;
            if (via == VMSPLICE || via == SPLICE) {
                struct iovec iov = {buffer + done, len - done};
                n = vmsplice(fd, &iov, 1, 0);
            } else {
                n = write(fd, buffer + done, len - done);
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) die("write");
            done += (size_t)n;
            writes++;
        }
        sent += len;
        number++;
    }
    close(fd);
    return writes;
}

// Reads into `buffer` (or splices into /dev/null) until the end of the
// stream; checks the stamps of what it reads.
static void receive_all(int fd, enum via via, size_t chunk, char *buffer,
                        uint64_t *received, long *reads) {
    int null = -1;
    if (via == SPLICE && (null = open("/dev/null", O_WRONLY)) < 0)
        die("open /dev/null");
    *received = 0, *reads = 0;
    for (;;) {
        ssize_t n = via == SPLICE ? splice(fd, NULL, null, NULL, chunk, 0)
                                  : read(fd, buffer, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read");
        if (n == 0) break;
        if (via != SPLICE) {
            uint64_t start = (*received + chunk - 1) / chunk * chunk;
            for (; start < *received + (uint64_t)n; start += chunk)
                if (buffer[start - *received] != (char)(start / chunk))
                    fail("a chunk's stamp is wrong");
        }
        *received += (uint64_t)n;
        (*reads)++;
    }
}
// ANCHOR_END: send

// Fills `fds` with the receiving and the sending end of a channel.
static void make_channel(enum via via, int fds[2], uint64_t pipe_size) {
    if (via == UNIX) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
            die("socketpair");
    } else if (via == TCP) {
        struct sockaddr_in addr = {.sin_family = AF_INET};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener < 0 || fds[1] < 0) die("socket");
        if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
            listen(listener, 1) < 0 ||
            getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
            die("listen");
        if (connect(fds[1], (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        if ((fds[0] = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) < 0)
            die("accept");
        close(listener);
    } else {
        if (pipe2(fds, O_CLOEXEC) < 0) die("pipe");
        if (pipe_size && fcntl(fds[1], F_SETPIPE_SZ, (int)pipe_size) < 0)
            die("--pipe-size");
    }
}

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

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t size(const char *text) {
    char *rest;
    errno = 0;
    unsigned long long n = strtoull(text, &rest, 10);
    int shift = *rest == 'K' ? 10 : *rest == 'M' ? 20 : *rest == 'G' ? 30 : 0;
    if (shift) rest++;
    if (errno || *rest || rest == text || text[0] == '-' || n == 0 ||
        n > (UINT64_MAX >> shift))
        fail(usage);
    return (uint64_t)n << shift;
}

static int read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

// ANCHOR: main
int main(int argc, char **argv) {
    static struct option options[] = {
        {"via", required_argument, 0, 'v'},
        {"cpus", required_argument, 0, 'c'},
        {"bytes", required_argument, 0, 'b'},
        {"chunk", required_argument, 0, 'k'},
        {"pipe-size", required_argument, 0, 'p'},
        {"huge", no_argument, 0, 'H'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    enum via via = PIPE;
    const char *cpus = "same";
    uint64_t bytes = 1ULL << 30;
    size_t chunk = 64 << 10;
    uint64_t pipe_size = 0;
    int opt, huge = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'v': {
            int found = -1;
            for (int i = 0; i < 5; i++)
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
        case 'b': bytes = size(optarg); break;
        case 'k': chunk = (size_t)size(optarg); break;
        case 'p': pipe_size = size(optarg); break;
        case 'H': huge = 1; break;
        case 'h': printf("%s\n", usage); return 0;
        default: fail(usage);
        }
    }
    if (optind < argc) fail(usage);
    if ((via == VMSPLICE || via == SPLICE) &&
        chunk % (size_t)sysconf(_SC_PAGESIZE) != 0)
        fail("--chunk must be a multiple of the page size");
    if (pipe_size && (via == UNIX || via == TCP))
        fail("--pipe-size is for pipe, vmsplice and splice");
    if (pipe_size > INT32_MAX) fail(usage);
    if (chunk > 1 << 30) fail("--chunk must be from 1 to 1G");

    int parent_cpu, child_cpu, fds[2], report[2];
    choose_cpus(cpus, &parent_cpu, &child_cpu);
    // As Listing 27-2's keep_zombies does: a SIGCHLD left ignored by our
    // parent would make the kernel reap the child, and waitpid fail.
    if (signal(SIGCHLD, SIG_DFL) == SIG_ERR) die("signal");
    make_channel(via, fds, pipe_size);
    // The pipe's capacity, as the kernel set it: a power of two pages.
    if (pipe_size) {
        int capacity = fcntl(fds[1], F_GETPIPE_SZ);
        if (capacity < 0) die("fcntl");
        pipe_size = (uint64_t)capacity;
    }
    if (pipe2(report, O_CLOEXEC) < 0) die("pipe");
    pid_t parent = getpid();
    pin_to(parent_cpu);
    // As the Rust runtime does before main: a write to a closed pipe or
    // socket then fails with EPIPE, and we say so, instead of dying
    // silently of SIGPIPE. The child inherits it.
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) die("signal");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        who = "throughput child";
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl");
        if (getppid() != parent) fail("the parent is gone");
        close(fds[1]);
        close(report[0]);
        pin_to(child_cpu);
        uint64_t message[2];
        long reads;
        char *buffer = pattern(chunk, huge);
        if (write(report[1], "r", 1) != 1) die("write");
        receive_all(fds[0], via, chunk, buffer, &message[0], &reads);
        message[1] = (uint64_t)reads;
        // 16 bytes, less than PIPE_BUF: one write, never split.
        if (write(report[1], message, sizeof message) != sizeof message)
            die("write");
        _exit(0);
    }
    close(fds[0]);
    close(report[1]);
    // Made and touched before the clock starts; never freed: until the
    // child has read everything, the pipe may still refer to its pages.
    size_t buffers = ring_buffers(fds[1], via, chunk);
    char *ring = pattern(buffers * chunk, huge);
    char ready;
    if (read_all(report[0], &ready, 1) < 0) fail("the child is gone");
    struct rusage before, after, children;
    getrusage(RUSAGE_SELF, &before);
    double start = now();
    long writes = send_all(fds[1], via, bytes, chunk, ring, buffers);
    uint64_t message[2];
    if (read_all(report[0], message, sizeof message) < 0)
        fail("the child is gone");
    double elapsed = now() - start;
    getrusage(RUSAGE_SELF, &after);
    int status;
    if (waitpid(pid, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("the child failed");
    if (message[0] != bytes) fail("the child received the wrong count");
    getrusage(RUSAGE_CHILDREN, &children);
    long waits = after.ru_nvcsw - before.ru_nvcsw + children.ru_nvcsw;
    long preemptions =
        after.ru_nivcsw - before.ru_nivcsw + children.ru_nivcsw;
    // ANCHOR_END: main

    char where[64];
    if (parent_cpu < 0)
        snprintf(where, sizeof where, "any CPU");
    else if (parent_cpu == child_cpu)
        snprintf(where, sizeof where, "CPU %d", parent_cpu);
    else
        snprintf(where, sizeof where, "CPUs %d and %d", parent_cpu, child_cpu);
    double chunks = (double)((bytes + chunk - 1) / chunk);
    char extras[64] = "";
    if (pipe_size)
        snprintf(extras, sizeof extras, ", a pipe of %llu bytes",
                 (unsigned long long)pipe_size);
    if (huge) strcat(extras, ", huge pages");
    // Measured: from here on, a filter, which SIGPIPE ends quietly.
    signal(SIGPIPE, SIG_DFL);
    printf("%s on %s%s: %llu bytes in %zu-byte writes, %llu received; "
           "measured: %.6f s, %.3f GiB/s, %ld writes, %llu reads, %.2f waits "
           "and %.2f preemptions per chunk\n",
           via_names[via], where, extras, (unsigned long long)bytes, chunk,
           (unsigned long long)message[0], elapsed,
           (double)bytes / (double)(1 << 30) / elapsed, writes,
           (unsigned long long)message[1], (double)waits / chunks,
           (double)preemptions / chunks);
    // A line that cannot be written (a full disk) is an error like the
    // others. A closed standard output is not: Rust's standard library
    // treats it as a place that takes everything, and so does this twin.
    if (fflush(stdout) != 0 && errno != EBADF) die("standard output");
    return 0;
}
// ANCHOR_END: whole
