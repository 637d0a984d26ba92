/* LD_PRELOAD shim for the SQLite power-loss test.
 *
 * After every successful fsync()/fdatasync() of a regular file under
 * $POWER_DIR, copy the file's whole content to "<file>.synced" (atomically,
 * through a temporary file and rename). After a SIGKILL the test replaces
 * each file with its last ".synced" copy (or empties it): what a power cut
 * that keeps only synced data could leave.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void snapshot(int fd) {
    const char *dir = getenv("POWER_DIR");
    if (dir == NULL || *dir == 0) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = 0;
    if (strncmp(path, dir, strlen(dir)) != 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char tmp[PATH_MAX + 16], done[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.synced-tmp", path);
    snprintf(done, sizeof done, "%s.synced", path);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) return;
    char buf[65536];
    off_t at = 0;
    for (;;) {
        ssize_t got = pread(fd, buf, sizeof buf, at);
        if (got <= 0) break;
        if (write(out, buf, (size_t)got) != got) break;
        at += got;
    }
    close(out);
    rename(tmp, done);
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int r = real(fd);
    if (r == 0) snapshot(fd);
    return r;
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int r = real(fd);
    if (r == 0) snapshot(fd);
    return r;
}
