/* test_writer.c - buffered output (lib/writer.c): pieces, flush, append, EPIPE. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "writer.h"

static void test_file(void **state)
{
    char path[] = "/tmp/telem-test-writer-XXXXXX";
    struct tlm_writer *w;
    char got[64] = "";
    FILE *f;
    int fd = mkstemp(path);
    (void)state;
    close(fd);
    assert_int_equal(tlm_writer_open(path, 0, &w, NULL), 0);
    assert_int_equal(w->is_file, 1);
    assert_int_equal(tlm_writer_line(w, "{\"a\":1}", 7, NULL), 0);
    assert_int_equal(w->written, 0); /* buffered */
    assert_int_equal(tlm_writer_sync(w, NULL), 0);
    assert_int_equal(w->written, 8);
    assert_int_equal(tlm_writer_close(w, NULL), 0);
    assert_int_equal(tlm_writer_open(path, 1, &w, NULL), 0); /* append */
    assert_int_equal(tlm_buf_puts(&w->buf, "{\"b\":2}\n"), 0);
    assert_int_equal(tlm_writer_end_line(w, NULL), 0);
    assert_int_equal(w->lines, 1);
    assert_int_equal(tlm_writer_close(w, NULL), 0);
    f = fopen(path, "r");
    assert_int_equal(fread(got, 1, sizeof(got) - 1, f), 16);
    fclose(f);
    assert_string_equal(got, "{\"a\":1}\n{\"b\":2}\n");
    unlink(path);
}

static void test_pipe_pieces_and_epipe(void **state)
{
    int fds[2], saved = dup(1);
    struct tlm_writer *w;
    struct tlm_error err;
    char *line = malloc(100000);
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    memset(line, 'x', 100000);
    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], 1);
    close(fds[1]);
    assert_int_equal(tlm_writer_open("-", 0, &w, NULL), 0);
    assert_int_equal(w->is_file, 0);
    assert_int_equal(tlm_writer_line(w, line, 1000, NULL), 0);
    assert_int_equal(tlm_writer_flush(w, NULL), 0);
    char buf[2000];
    assert_int_equal(read(fds[0], buf, sizeof(buf)), 1001);
    close(fds[0]); /* the reader goes away */
    tlm_error_clear(&err);
    assert_int_equal(tlm_writer_line(w, line, 100000, &err), 0);
    assert_int_equal(tlm_writer_flush(w, &err), TLM_EPIPE);
    assert_int_equal(err.code, TLM_EPIPE);
    tlm_writer_close(w, NULL);
    dup2(saved, 1);
    close(saved);
    free(line);
}

static void test_open_error(void **state)
{
    struct tlm_writer *w = NULL;
    struct tlm_error err;
    (void)state;
    tlm_error_clear(&err);
    assert_int_equal(tlm_writer_open("/nonexistent-dir/x", 0, &w, &err), TLM_EIO);
    assert_null(w);
    assert_string_equal(err.source, "/nonexistent-dir/x");
    assert_non_null(strstr(err.text, "No such file or directory"));
    assert_int_equal(tlm_writer_close(NULL, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_pipe_pieces_and_epipe),
        cmocka_unit_test(test_open_error),
    };
    return cmocka_run_group_tests_name("writer", tests, NULL, NULL);
}
