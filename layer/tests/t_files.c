/* t_files MODE PATH...: exercises remote files under the layer and prints one fact per line.
 *   read FILE        open/fstat/read/lseek/pread/readv/dup/fcntl/poll, then fopen + fgets lines
 *   lines FILE       fopen + fgets every line, prints the count and the last line
 *   dir DIR          opendir/readdir (sorted names, without . and ..), dirfd + fstat
 *   stat PATH        stat, lstat, access(R_OK), readlink
 *   open PATH        open O_RDONLY: prints fd or the errno name
 *   write FILE       creat + write "x\n" + close, then mkdir FILE.d, rename FILE FILE.moved, unlink
 *   mmap FILE        fstat, then mmap the whole file read-only: prints its first line from the mapping
 *   readlink LINK    readlink, readlinkat (relative to the link's directory), readlink into 1 byte
 */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>

static int do_mmap(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("open=%s\n", errname(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size == 0) {
        printf("fstat size=0\n");
        return 1;
    }
    const char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        printf("mmap=%s\n", errname(errno));
        return 1;
    }
    const char *nl = memchr(m, '\n', (size_t)st.st_size);
    printf("mmap_first_line=%.*s\n", nl ? (int)(nl - m) : (int)st.st_size, m);
    printf("mmap_last_byte=%d\n", m[st.st_size - 1]);
    munmap((void *)m, (size_t)st.st_size);
    close(fd);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int do_read(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("open=%s\n", errname(errno));
        return 1;
    }
    struct stat st;
    int fr = fstat(fd, &st);
    printf("fstat=%d size=%lld reg=%d\n", fr, (long long)st.st_size, S_ISREG(st.st_mode));
    char buf[8] = { 0 };
    ssize_t n = read(fd, buf, 5);
    printf("read=%zd [%.5s]\n", n, buf);
    printf("lseek_cur=%lld\n", (long long)lseek(fd, 0, SEEK_CUR));
    printf("lseek_end=%lld\n", (long long)lseek(fd, 0, SEEK_END));
    memset(buf, 0, sizeof buf);
    n = pread(fd, buf, 3, 1);
    printf("pread=%zd [%.3s]\n", n, buf);
    lseek(fd, 0, SEEK_SET);
    char a[2] = { 0 }, b[3] = { 0 };
    struct iovec iov[2] = { { a, 2 }, { b, 3 } };
    n = readv(fd, iov, 2);
    printf("readv=%zd [%.2s|%.3s]\n", n, a, b);
    int d = dup(fd);
    memset(buf, 0, sizeof buf);
    n = read(d, buf, 2); /* shares the offset: continues at 5 */
    printf("dup_read=%zd [%.2s]\n", n, buf);
    int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    printf("fcntl_dupfd=%d getfd=%d\n", d2 >= 50, fcntl(d2, F_GETFD) & FD_CLOEXEC);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int pr = poll(&p, 1, 0);
    printf("poll=%d revents_in=%d\n", pr, (p.revents & POLLIN) != 0);
    close(fd);
    memset(buf, 0, sizeof buf);
    n = pread(d, buf, 2, 0);
    printf("after_close_dup_read=%zd [%.2s]\n", n, buf);
    close(d);
    close(d2);
    FILE *fp = fopen(path, "r");
    char line[256];
    printf("fopen=%d fileno_ok=%d\n", fp != NULL, fp && fileno(fp) >= 0);
    if (fp && fgets(line, sizeof line, fp)) printf("first_line=%s", line);
    if (fp) fclose(fp);
    return 0;
}

static int do_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        printf("fopen=%s\n", errname(errno));
        return 1;
    }
    char line[512], last[512] = "";
    long count = 0;
    while (fgets(line, sizeof line, fp)) {
        count++;
        strcpy(last, line);
    }
    fclose(fp);
    printf("lines=%ld last=%s", count, last);
    return 0;
}

static int do_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        printf("opendir=%s\n", errname(errno));
        return 1;
    }
    char *names[256];
    int n = 0, dots = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) {
            dots++;
            continue;
        }
        names[n++] = strdup(e->d_name);
    }
    qsort(names, (size_t)n, sizeof *names, cmp);
    printf("dots=%d entries=", dots);
    for (int i = 0; i < n; i++) {
        printf("%s%s", i ? "," : "", names[i]);
        free(names[i]);
    }
    printf("\n");
    struct stat st;
    int fr = fstat(dirfd(d), &st);
    printf("dirfd_fstat=%d isdir=%d\n", fr, S_ISDIR(st.st_mode));
    closedir(d);
    return 0;
}

static int do_stat(const char *path)
{
    struct stat st;
    int r = stat(path, &st);
    printf("stat=%s size=%lld\n", r ? errname(errno) : "0", r ? -1LL : (long long)st.st_size);
    r = lstat(path, &st);
    printf("lstat=%s link=%d\n", r ? errname(errno) : "0", r ? 0 : S_ISLNK(st.st_mode));
    r = access(path, R_OK);
    printf("access=%s\n", r ? errname(errno) : "0");
    char target[256];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n >= 0) target[n] = '\0';
    printf("readlink=%s\n", n < 0 ? errname(errno) : target);
    return 0;
}

static void print_link(const char *what, ssize_t n, const char *target)
{
    if (n < 0) printf("%s=%s\n", what, errname(errno));
    else printf("%s=%zd [%.*s]\n", what, n, (int)n, target);
}

/* A target one byte long (or a buffer of one byte) must come back as 1, not as "not ours". */
static int do_readlink(const char *path)
{
    char target[256];
    print_link("readlink", readlink(path, target, sizeof target), target);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 1;
    *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        printf("open_dir=%s\n", errname(errno));
        return 1;
    }
    print_link("readlinkat", readlinkat(dfd, slash + 1, target, sizeof target), target);
    close(dfd);
    print_link("readlink_1", readlink(path, target, 1), target);
    return 0;
}

static int do_open(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("open=%s\n", errname(errno));
        return 0;
    }
    char buf[128] = { 0 };
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = '\0';
    printf("open=ok read=%zd [%s]\n", n, buf);
    close(fd);
    return 0;
}

static int do_write(const char *path)
{
    int fd = creat(path, 0644);
    if (fd < 0) {
        printf("creat=%s\n", errname(errno));
        return 1;
    }
    printf("write=%zd\n", write(fd, "x\n", 2));
    printf("close=%d\n", close(fd));
    char dir[512], moved[512];
    snprintf(dir, sizeof dir, "%s.d", path);
    snprintf(moved, sizeof moved, "%s.moved", path);
    printf("mkdir=%s\n", mkdir(dir, 0755) ? errname(errno) : "0");
    printf("rename=%s\n", rename(path, moved) ? errname(errno) : "0");
    printf("unlink=%s\n", unlink(moved) ? errname(errno) : "0");
    printf("rmdir=%s\n", rmdir(dir) ? errname(errno) : "0");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int bad = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[1], "read")) bad |= do_read(argv[i]);
        else if (!strcmp(argv[1], "lines")) bad |= do_lines(argv[i]);
        else if (!strcmp(argv[1], "dir")) bad |= do_dir(argv[i]);
        else if (!strcmp(argv[1], "stat")) bad |= do_stat(argv[i]);
        else if (!strcmp(argv[1], "open")) bad |= do_open(argv[i]);
        else if (!strcmp(argv[1], "write")) bad |= do_write(argv[i]);
        else if (!strcmp(argv[1], "mmap")) bad |= do_mmap(argv[i]);
        else if (!strcmp(argv[1], "readlink")) bad |= do_readlink(argv[i]);
        else return 2;
    }
    return bad;
}
