/*
 * mock-cluster.c - a Kafka cluster for the tests: librdkafka's mock cluster, shared with
 * other processes through its real TCP listener.
 *
 * Usage: mock-cluster [TOPIC:PARTITIONS]...
 * Creates the topics, prints the bootstrap address ("127.0.0.1:PORT") on one line of
 * stdout, and stays alive until SIGTERM or SIGINT.
 *        mock-cluster --produce BOOTSTRAP TOPIC KEYHEX VALUE
 * Produces one message whose key is the bytes KEYHEX spells in hexadecimal (any bytes,
 * which `telem ingest -o` cannot make), then exits: 0 once it is acknowledged.
 * The mock cluster lives inside this process; telem processes connect to it as to a
 * real broker. Nothing is persisted.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int produce(char **argv)
{
    char errstr[512], key[256];
    size_t klen = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    for (const char *h = argv[3]; h[0] && h[1] && klen < sizeof(key); h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            return 2;
        key[klen++] = (char)v;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof(errstr)) ||
        !(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "mock-cluster: %s\n", errstr);
        return 1;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_VALUE(argv[4], strlen(argv[4])),
        RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (!e)
        e = rd_kafka_flush(rk, 10000);
    if (e)
        fprintf(stderr, "mock-cluster: %s\n", rd_kafka_err2str(e));
    rd_kafka_destroy(rk);
    return e ? 1 : 0;
}

int main(int argc, char **argv)
{
    char errstr[512];
    if (argc == 6 && strcmp(argv[1], "--produce") == 0)
        return produce(argv + 1);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    struct sigaction sa;

    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "mock-cluster: %s\n", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fprintf(stderr, "mock-cluster: cannot create the mock cluster\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        char *colon = strrchr(argv[i], ':');
        int n = colon ? atoi(colon + 1) : 4;
        if (colon)
            *colon = '\0';
        if (rd_kafka_mock_topic_create(mc, argv[i], n > 0 ? n : 4, 1)) {
            fprintf(stderr, "mock-cluster: cannot create topic %s\n", argv[i]);
            return 1;
        }
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    while (!stop)
        pause();
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
