/*
 * mock-cluster.c - a Kafka cluster for the tests: librdkafka's mock cluster, shared with
 * other processes through its real TCP listener.
 *
 * Usage: mock-cluster [TOPIC:PARTITIONS]...
 * Creates the topics, prints the bootstrap address ("127.0.0.1:PORT") on one line of
 * stdout, and stays alive until SIGTERM or SIGINT.
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

int main(int argc, char **argv)
{
    char errstr[512];
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
