/*
 * nj_file_open, nj_file_check, nj_file_read, nj_token_read: the option files, refused before
 * libnats would open them.
 */
#include "nj_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int nj_file_open(const char *path, const char *what, nj_file_kind kind, char *err, size_t cap)
{
    /* O_NONBLOCK: a FIFO opens at once (and is then refused) instead of awaiting a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, cap, "%s %s: %s", what, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    const char *fault = NULL;
    if (kind == NJ_FILE_SECRET &&
        ((st.st_mode & 077) || (st.st_uid != geteuid() && st.st_uid != 0)))
        fault = "must be owner-only (chmod 600)";
    else if (!S_ISREG(st.st_mode))
        fault = "is not a file";
    if (fault) {
        snprintf(err, cap, "%s %s %s", what, path, fault);
        close(fd);
        return -1;
    }
    return fd;
}

int nj_file_check(const char *path, const char *what, nj_file_kind kind, char *err, size_t cap)
{
    int fd = nj_file_open(path, what, kind, err, cap);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

int nj_file_read(int fd, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    while (*len < cap) {
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    return 0;
}

int nj_token_read(const char *path, const char *what, char **token, char *err, size_t cap)
{
    *token = NULL;
    int fd = nj_file_open(path, what, NJ_FILE_SECRET, err, cap);
    if (fd < 0)
        return -1;
    char buf[NJ_TOKEN_MAX_BYTES + 1]; /* a byte over the bound: a longer file shows */
    size_t len = 0;
    int failed = nj_file_read(fd, buf, sizeof buf, &len) != 0 ? errno : 0;
    close(fd);
    const char *fault = failed                     ? strerror(failed)
                        : len > NJ_TOKEN_MAX_BYTES ? NJ_TOO_LARGE(NJ_TOKEN_MAX_KIB, "a token")
                                                   : NULL;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                   buf[len - 1] == '\t'))
        len--;
    if (!fault && len == 0)
        fault = "is empty";
    if (!fault && !(*token = strndup(buf, len)))
        fault = "cannot be read: out of memory";
    explicit_bzero(buf, sizeof buf);
    if (failed)
        snprintf(err, cap, "%s %s: %s", what, path, fault);
    else if (fault)
        snprintf(err, cap, "%s %s %s", what, path, fault);
    return fault ? -1 : 0;
}
