/* test_kafka.c - lib/kafka.c without a broker: kafka:// addresses, their parameters and
 * the errors for a bad one (no topic, no group, a password on the command line, an
 * unknown librdkafka property, an input parameter on an output). The end-to-end paths
 * run against the mock cluster in tests/cli/t6001 and t6002. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kafka.h"

static void test_is_url(void **state)
{
    (void)state;
    assert_true(tlm_kafka_is_url("kafka://h:1/t"));
    assert_false(tlm_kafka_is_url("kafka:/h/t"));
    assert_false(tlm_kafka_is_url("events.ndjson"));
    assert_false(tlm_kafka_is_url(NULL));
}

/* in_fails(url, text): creating an input for url fails with a message containing text */
static void in_fails(const char *url, const char *text)
{
    struct tlm_error err;
    tlm_error_clear(&err);
    assert_null(tlm_kafka_in_create(url, NULL, &err));
    if (!strstr(err.text, text))
        fail_msg("%s: got '%s', want '%s'", url, err.text, text);
}

static void out_fails(const char *url, const char *text)
{
    struct tlm_error err;
    int fd = -1;
    tlm_error_clear(&err);
    assert_null(tlm_kafka_out_create(url, &fd, &err));
    assert_int_equal(fd, -1);
    if (!strstr(err.text, text))
        fail_msg("%s: got '%s', want '%s'", url, err.text, text);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    in_fails("kafka://127.0.0.1:1", "expected kafka://HOST:PORT/TOPIC");
    in_fails("kafka:///t?group=g", "expected kafka://HOST:PORT/TOPIC");
    in_fails("kafka://h:1/a/b?group=g", "a topic name has no '/'");
    in_fails("kafka://h:1/t", "needs group=NAME");
    in_fails("kafka://h:1/t?eof=1", "needs group=NAME");
    in_fails("kafka://h:1/t?group", "parameter 'group' has no value");
    in_fails("kafka://h:1/t?group=g&sasl.password=x", "never taken from the command line");
    in_fails("kafka://h:1/t?group=g&ssl.key.password=x", "never taken from the command line");
    in_fails("kafka://h:1/t?group=g&no.such.thing=1", "no.such.thing");
    in_fails("kafka://h:1/t?group=g&key=id", "key= applies to outputs");
    in_fails("kafka://h:1/t?group=g&password-file=/nonexistent/pw", "password-file /nonexistent/pw");
}

static void test_bad_outputs(void **state)
{
    (void)state;
    out_fails("kafka://h:1", "expected kafka://HOST:PORT/TOPIC");
    out_fails("kafka://h:1/t?group=g", "apply to inputs");
    out_fails("kafka://h:1/t?eof=1", "apply to inputs");
    out_fails("kafka://h:1/t?key-field=k", "apply to inputs");
    out_fails("kafka://h:1/t?sasl.password=x", "never taken from the command line");
    out_fails("kafka://h:1/t?linger.ms=notanumber", "linger.ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_url),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_bad_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
