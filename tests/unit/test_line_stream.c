/*
 * The bounded line reader behind `sync emit --file` (host/common.c): lines come
 * out whole however the reads split them, a line of exactly the limit passes,
 * one byte more is refused by number, and an endless line is refused without
 * reading past the limit.
 */
#include "testutil.h"

#include "common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A stream over a pipe fed with text (small: it fits the pipe buffer). */
static int pipe_with(const char *text, size_t len)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], text, len), (ssize_t)len);
    close(p[1]);
    return p[0];
}

static void expect_line(sk__line_stream *ls, const char *want, size_t want_no)
{
    char *line;
    size_t len;
    sk__err err = {{0}};
    assert_int_equal(sk__line_stream_next(ls, &line, &len, &err), SK_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(line, want);
    assert_int_equal(ls->line_no, want_no);
}

static void expect_end(sk__line_stream *ls)
{
    char *line;
    size_t len;
    sk__err err = {{0}};
    assert_int_equal(sk__line_stream_next(ls, &line, &len, &err), SK_ERR_NOT_FOUND);
}

static void test_lines_up_to_the_limit_pass_and_the_last_may_lack_a_newline(void **state)
{
    (void)state;
    static const char text[] = "12345678\n\n1234\nabcdefgh";
    int fd = pipe_with(text, sizeof text - 1);
    sk__line_stream ls;
    sk__line_stream_init(&ls, fd, "in", 8);
    expect_line(&ls, "12345678", 1);
    expect_line(&ls, "", 2);
    expect_line(&ls, "1234", 3);
    expect_line(&ls, "abcdefgh", 4);
    expect_end(&ls);
    sk__line_stream_free(&ls);
    close(fd);
}

static void expect_too_long(const char *text, size_t max, size_t want_no)
{
    int fd = pipe_with(text, strlen(text));
    sk__line_stream ls;
    sk__line_stream_init(&ls, fd, "in", max);
    char *line;
    size_t len;
    sk__err err = {{0}};
    for (size_t i = 1; i < want_no; i++)
        assert_int_equal(sk__line_stream_next(&ls, &line, &len, &err), SK_OK);
    assert_int_equal(sk__line_stream_next(&ls, &line, &len, &err), SK_ERR_INVALID_EVENT);
    assert_int_equal(ls.line_no, want_no);
    assert_string_equal(err.msg, "line longer than 8 bytes");
    sk__line_stream_free(&ls);
    close(fd);
}

static void test_one_byte_over_the_limit_is_refused_by_number(void **state)
{
    (void)state;
    expect_too_long("ok\n123456789\nok\n", 8, 2);
    expect_too_long("ok\nok\n123456789", 8, 3); /* the last line, without a newline */
}

/* /dev/zero never ends and holds no newline: the limit is all that is read. */
static void test_an_endless_line_is_refused_after_the_limit(void **state)
{
    (void)state;
    int fd = open("/dev/zero", O_RDONLY);
    assert_true(fd >= 0);
    sk__line_stream ls;
    sk__line_stream_init(&ls, fd, "/dev/zero", (size_t)1 << 20);
    char *line;
    size_t len;
    sk__err err = {{0}};
    assert_int_equal(sk__line_stream_next(&ls, &line, &len, &err), SK_ERR_INVALID_EVENT);
    assert_string_equal(err.msg, "line longer than 1 MiB");
    assert_true(ls.cap <= ((size_t)1 << 20) + 2);
    sk__line_stream_free(&ls);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_up_to_the_limit_pass_and_the_last_may_lack_a_newline),
        cmocka_unit_test(test_one_byte_over_the_limit_is_refused_by_number),
        cmocka_unit_test(test_an_endless_line_is_refused_after_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
