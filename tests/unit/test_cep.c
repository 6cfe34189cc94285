/*
 * test_cep.c - the CEP engine against Apache Flink CEP's own test cases (cmocka, TAP).
 *
 * Each case is a row: a pattern in the one-line language, events written as
 * "name@time[:price]" (time in ms; the events get ids 1, 2, ... in order, and a field
 * "id"), and the expected matches as event ids ("1 3 4|2 3 4": two matches), compared as
 * sets as Flink's tests compare them (compareMaps). Timeouts likewise, "ids@time".
 * The rows reproduce NFAITCase, GreedyITCase, TimesRangeITCase, NotPatternITCase,
 * AfterMatchSkipITCase and IterativeConditionsITCase from flink-libraries/flink-cep
 * (Event(id, name, price) becomes {"name":..., "price":...}). As in their feedNFA, time
 * advances to the last event's time only, so partial matches still open are not timed out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cep.h"
#include "jscan.h"

struct row {
    const char *title;
    const char *pattern;
    const char *events;
    const char *matches;
    const char *timeouts; /* NULL: not checked */
};

struct got {
    char *m[512];
    size_t nm;
    char *t[512];
    size_t nt;
};

static int sink_emit(void *arg, const struct tlm_cep_match *m, struct tlm_error *err)
{
    struct got *g = arg;
    int ids[256], n = 0;
    char buf[2048];
    size_t len = 0;
    (void)err;
    for (size_t i = 0; i < m->nstages; i++)
        for (size_t k = 0; k < m->count[i]; k++) {
            json_t *e = tlm_cep_event_json(m->events[i][k]);
            ids[n++] = (int)json_integer_value(json_object_get(e, "id"));
        }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%d", i ? " " : "", ids[i]);
    if (m->timeout)
        snprintf(buf + len, sizeof(buf) - len, "@%lld", (long long)(m->ts / 1000000));
    if (m->timeout)
        g->t[g->nt++] = strdup(buf);
    else
        g->m[g->nm++] = strdup(buf);
    return 0;
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Joins the sorted strings with '|'. */
static char *joined(char **v, size_t n)
{
    size_t len = 1;
    qsort(v, n, sizeof(char *), cmpstr);
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *s = calloc(1, len);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, "|");
        strcat(s, v[i]);
    }
    return s;
}

static char *sorted_expect(const char *e)
{
    char *copy = strdup(e), *v[512], *save = NULL;
    size_t n = 0;
    for (char *t = strtok_r(copy, "|", &save); t; t = strtok_r(NULL, "|", &save))
        v[n++] = t;
    char *r = joined(v, n);
    free(copy);
    return r;
}

/* Runs a row; returns 0 when it passes (prints the difference otherwise). */
static int run_row(const struct row *r, int drain)
{
    struct tlm_error err;
    struct tlm_cep *c = tlm_cep_create();
    struct tlm_cep_pattern *p = tlm_cep_pattern_parse(r->pattern, &err);
    struct got g;
    int bad = 0;
    memset(&g, 0, sizeof(g));
    if (!p) {
        fprintf(stderr, "# %s: column %ld: %s\n", r->title, err.column, err.text);
        tlm_cep_destroy(c);
        return 1;
    }
    assert_int_equal(tlm_cep_add(c, p, &err), 0);
    char *evs = strdup(r->events), *save = NULL;
    int id = 0;
    long long last = 0;
    for (char *t = strtok_r(evs, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        char name[32], line[256];
        long long ts;
        double price = 0;
        int n = sscanf(t, "%31[^@]@%lld:%lf", name, &ts, &price);
        assert_true(n >= 2);
        id++;
        snprintf(line, sizeof(line), "{\"id\":%d,\"name\":\"%s\",\"price\":%.17g,\"timestamp\":%lld}",
                 id, name, price, ts);
        assert_int_equal(tlm_cep_push(c, "\"k\"", 3, ts * 1000000, line, strlen(line), NULL, &err), 0);
        last = ts;
    }
    free(evs);
    struct tlm_cep_sink sink = { &g, sink_emit, 0 };
    assert_int_equal(tlm_cep_advance(c, drain ? INT64_MAX : last * 1000000, &sink, &err), 0);
    char *gm = joined(g.m, g.nm), *em = sorted_expect(r->matches);
    if (strcmp(gm, em)) {
        fprintf(stderr, "# %s: matches\n#   got    %s\n#   wanted %s\n", r->title, gm, em);
        bad = 1;
    }
    free(gm);
    free(em);
    if (r->timeouts) {
        char *gt = joined(g.t, g.nt), *et = sorted_expect(r->timeouts);
        if (strcmp(gt, et)) {
            fprintf(stderr, "# %s: timeouts\n#   got    %s\n#   wanted %s\n", r->title, gt, et);
            bad = 1;
        }
        free(gt);
        free(et);
    }
    for (size_t i = 0; i < g.nm; i++)
        free(g.m[i]);
    for (size_t i = 0; i < g.nt; i++)
        free(g.t[i]);
    tlm_cep_destroy(c);
    return bad;
}

#define N(x) "name == \"" x "\""

static const struct row nfa_rows[] = {
    /* NFAITCase.testNoConditionNFA */
    { "NoCondition", "start: true ->> end: true", "a@1 b@2 c@3 d@4 e@5",
      "1 2|1 3|1 4|1 5|2 3|2 4|2 5|3 4|3 5|4 5", NULL },
    /* testSimplePatternNFA (middle: a SubEvent with volume > 5, here price > 5) */
    { "SimplePattern", "start: " N("start") " -> middle: price > 5 -> end: " N("end"),
      "start@1:1 foobar@2:1 barfoo@3:5 foo@3:10 start@4:1 end@5:1", "1 4 6", NULL },
    { "StrictContinuityWithResults", "middle: " N("a") " => end: " N("b"), "a@3 b@5", "1 2", NULL },
    { "StrictContinuityNoResults", "middle: " N("a") " => end: " N("b"), "a@3 c@4 b@5", "", NULL },
    { "SimplePatternWithTimeWindow",
      "start: " N("start") " -> middle: " N("middle") " -> end: " N("end") " within 10ms",
      "start@1 start@2 middle@3 foobar@4 end@11 end@13", "2 3 5", NULL },
    { "SimplePatternWithTimeoutHandling",
      "start: " N("start") " ->> middle: " N("middle") " ->> end: " N("end") " within 10ms",
      "start@1 start@2 middle@3 foobar@4 end@11 end@13", "2 3 5",
      "1 3@11|2 3@12|1@11|2@12" }, /* current Flink: start + within */
    { "BranchingPattern",
      "start: " N("start") " ->> m1: price > 5 ->> m2: " N("next-one") " ->> end: " N("end"),
      "start@1:1 foo1@3:10 foo2@4:10 foo3@5:10 next-one@6:2 next-one@7:2 end@8:1",
      "1 2 5 7|1 3 5 7|1 4 5 7|1 2 6 7|1 3 6 7|1 4 6 7", NULL },
    { "ComplexBranchingAfterZeroOrMore",
      "start: " N("c") " ->> middle: " N("a") "* combinations ->> end1: " N("b") " ->> end2: "
      N("d") " ->> end3: " N("e"),
      "c@1 a@3 a@4 a@5 b@6 d@7 d@8 e@9",
      "1 2 3 4 5 6 8|1 2 3 5 6 8|1 2 4 5 6 8|1 3 4 5 6 8|1 2 5 6 8|1 3 5 6 8|1 4 5 6 8|1 5 6 8|"
      "1 2 3 4 5 7 8|1 2 3 5 7 8|1 2 4 5 7 8|1 3 4 5 7 8|1 2 5 7 8|1 3 5 7 8|1 4 5 7 8|1 5 7 8",
      NULL },
    { "ZeroOrMore", "start: " N("c") " ->> middle: " N("a") "* combinations -> end1: " N("b"),
      "c@1 a@3 a@4 b@6", "1 2 3 4|1 2 4|1 3 4|1 4", NULL },
    { "EagerZeroOrMore", "start: " N("c") " -> middle: " N("a") "* -> end1: " N("b"),
      "c@1 a@3 a@4 d@5 a@6 b@7", "1 2 3 5 6|1 2 3 6|1 2 6|1 6", NULL },
    { "BeginWithZeroOrMore", "middle: " N("a") "* -> end: " N("b"), "a@3 a@4 a@5 b@6",
      "1 2 3 4|1 2 4|2 3 4|1 4|2 4|3 4|4", NULL },
    { "ZeroOrMoreAfterZeroOrMore",
      "start: " N("c") " ->> mf: " N("a") "* combinations -> ms: " N("d")
      "* combinations -> end: " N("e"),
      "c@1 a@3 d@4 d@5 e@6", "1 2 3 4 5|1 2 3 5|1 3 4 5|1 3 5|1 2 5|1 5", NULL },
    { "ZeroOrMoreAfterBranching",
      "start: " N("c") " ->> branching: " N("a") " ->> merging: " N("f") " ->> kleene: " N("d")
      "* combinations -> end: " N("e"),
      "c@1 a@3 a@4 f@5 d@6 d@7 e@8",
      "1 2 4 7|1 2 4 5 7|1 2 4 6 7|1 2 4 5 6 7|1 3 4 7|1 3 4 5 7|1 3 4 6 7|1 3 4 5 6 7", NULL },
    { "StrictContinuityNoResultsAfterZeroOrMore",
      "start: " N("d") " -> middle: " N("a") "* => end: " N("b"), "d@1 a@2 a@3 c@4 b@5", "", NULL },
    { "StrictContinuityResultsAfterZeroOrMore",
      "start: " N("d") " ->> middle: " N("a") "* combinations => end: " N("b"), "d@1 a@2 a@3 b@5",
      "1 2 3 4|1 3 4", NULL },
};

/* more of NFAITCase: loops and times with every contiguity */
static const struct row nfa2_rows[] = {
    { "AtLeastOne", "start: " N("c") " ->> middle: " N("a") "+ combinations ->> end1: " N("b"),
      "c@1 a@3 a@4 b@6", "1 2 3 4|1 2 4|1 3 4", NULL },
    { "BeginWithAtLeastOne", "start: " N("a") "+ combinations -> end: " N("b"),
      "a@3 a@4 a@5 b@6", "1 2 3 4|1 2 4|1 3 4|2 3 4|1 4|2 4|3 4", NULL },
    { "NextZeroOrMore", "start: " N("start") " => middle: " N("middle") "* consecutive -> end: " N("end"),
      "start@1 event@2 middle@3 middle@4 middle@5 end@6", "1 6", NULL },
    { "AtLeastOneEager", "start: " N("c") " ->> middle: " N("a") "+ ->> end1: " N("b"),
      "c@1 a@3 a@4 a@5 b@6", "1 2 3 4 5|1 2 3 5|1 3 4 5|1 4 5|1 3 5|1 2 5", NULL },
    { "Optional", "start: " N("c") " -> middle: " N("a") "? -> end1: " N("b"),
      "c@1 a@5 b@6", "1 2 3|1 3", NULL },
    { "Times", "start: " N("c") " => middle: " N("a") "{2} combinations -> end1: " N("b"),
      "c@1 a@2 a@3 a@4 b@6", "1 2 3 5|1 2 4 5", NULL },
    { "StartWithTimes", "middle: " N("a") "{2} consecutive -> end1: " N("b"),
      "a@2 a@3 a@4 b@6", "1 2 4|2 3 4", NULL },
    { "TimesNonStrictWithNext", "start: " N("c") " => middle: " N("a") "{2} combinations -> end1: " N("b"),
      "c@1 a@2 f@3 a@4 f@5 a@6 b@7", "1 2 4 7|1 2 6 7", NULL },
    { "TimesNotStrictWithFollowedByEager", "start: " N("c") " -> middle: " N("a") "{2} -> end1: " N("b"),
      "c@1 a@2 a@4 a@6 b@7", "1 2 3 5", NULL },
};

static void test_nfa2(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(nfa2_rows) / sizeof(nfa2_rows[0]); i++)
        bad += run_row(&nfa2_rows[i], 0);
    assert_int_equal(bad, 0);
}

static void test_nfa(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(nfa_rows) / sizeof(nfa_rows[0]); i++)
        bad += run_row(&nfa_rows[i], 0);
    assert_int_equal(bad, 0);
}


/* GreedyITCase */
static const struct row greedy_rows[] = {
    /* a greedy last stage matches as a plain one (Flink adds its greedy condition to the
     * state after the stage: the final state has no transitions) */
    { "EndWithZeroOrMoreGreedy", "start: " N("c") " -> end: " N("a") "* greedy",
      "c@1 a@2 a@3 dummy@4 a@5", "1|1 2|1 2 3|1 2 3 5", NULL },
    { "EndWithZeroOrMoreConsecutiveGreedy", "start: " N("c") " -> end: " N("a") "* consecutive greedy",
      "c@1 a@2 a@3 dummy@4 a@5", "1|1 2|1 2 3", NULL },
    { "EndWithGreedyTimesRange", "start: " N("c") " -> end: " N("a") "{2,5} greedy",
      "c@1 a@2 a@3 a@4 a@5 dummy@6", "1 2 3|1 2 3 4|1 2 3 4 5", NULL },
    { "GreedyTimesRange", "start: " N("c") " -> middle: " N("a") "{2,5} greedy -> end: " N("d"),
      "c@1 a@2 a@3 a@4 a@5 d@6", "1 2 3 4 5 6", NULL },
    { "GreedyZeroOrMore", "start: " N("c") " -> middle: " N("a") "* greedy -> end: " N("d"),
      "c@1 a@2 a@3 a@4 d@5", "1 2 3 4 5", NULL },
    { "GreedyZeroOrMoreConsecutiveEndWithOptional",
      "start: " N("c") " -> middle: " N("a") "* consecutive greedy -> end: " N("d") "?",
      "c@1 a@2 a@3 a@4 d@5", "1 2 3 4 5", NULL },
    { "GreedyZeroOrMoreInBetween", "start: " N("c") " -> middle: " N("a") "* greedy -> end: " N("d"),
      "c@1 dummy@2 a@3 dummy@4 a@5 dummy@6 a@7 d@8", "1 3 5 7 8", NULL },
    { "GreedyZeroOrMoreWithDummyEventsAfterQuantifier",
      "start: " N("c") " -> middle: " N("a") "* greedy -> end: " N("d"),
      "c@1 a@2 a@3 dummy@4 d@5", "1 2 3 5", NULL },
    { "GreedyZeroOrMoreWithDummyEventsBeforeQuantifier",
      "start: " N("c") " -> middle: " N("a") "* greedy -> end: " N("d"), "c@1 dummy@2 d@5", "1 3", NULL },
    { "GreedyZeroOrMoreBeforeOptional",
      "start: " N("c") " -> middle1: " N("a") "* greedy -> middle2: " N("d") "? -> end: " N("e"),
      "c@1 a@2 a@3 dummy@4 e@5", "1 2 3 5", NULL },
    { "GreedyZeroOrMoreBeforeOptional2",
      "start: " N("c") " -> middle1: " N("a") "* greedy -> middle2: " N("d") "? -> end: " N("e"),
      "c@1 a@2 a@3 d@4 e@5", "1 2 3 5|1 2 3 4 5", NULL },
};

static void test_greedy(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(greedy_rows) / sizeof(greedy_rows[0]); i++)
        bad += run_row(&greedy_rows[i], 0);
    assert_int_equal(bad, 0);
}

/* NotPatternITCase (events fed in arrival order there: times follow arrival here) */
static const struct row not_rows[] = {
    { "NotNext", "start: " N("a") " => !notPattern: " N("b") " ->> middle: " N("c") " -> end: " N("d"),
      "a@1 c@2 b@3 c@4 d@5", "1 2 5|1 4 5", NULL },
    { "NotNextNoMatches", "start: " N("a") " => !notPattern: " N("b") " -> middle: " N("c") " -> end: " N("d"),
      "a@1 b@2 c@3 c@4 d@5", "", NULL },
    { "NotNextNoMatchesAtTheEnd",
      "start: " N("a") " ->> middle: " N("c") " ->> end: " N("d") " => !notPattern: " N("b"),
      "a@1 c@2 c@3 d@4 b@5", "", NULL },
    { "NotFollowedBy", "start: " N("a") " -> !notPattern: " N("b") " ->> middle: " N("c") " -> end: " N("d"),
      "a@1 c@2 b@3 c@4 d@5", "1 2 5", NULL },
    { "NotFollowedByBeforeOptional",
      "start: " N("a") " -> !notPattern: " N("b") " ->> middle: " N("c") "? -> end: " N("d"),
      "a@1 c@2 b@3 c@4 d@5", "1 2 5", NULL },
    { "TimesWithNotFollowedBy",
      "start: " N("a") " ->> middle: " N("b") "{2} -> !notPattern: " N("c") " -> end: " N("d"),
      "a@1 b@2 c@3 b@4 d@5", "", NULL },
    { "IgnoreStateOfTimesWithNotFollowedBy",
      "start: " N("a") " -> !notPattern: " N("b") " ->> middle: " N("c") "{2}? -> end: " N("d"),
      "a@1 d@2 e@3 b@4 c@5 c@6 d@7", "1 2", NULL },
    { "TimesWithNotFollowedByAfter",
      "start: " N("a") " ->> middle: " N("b") "{2} -> !notPattern: " N("c") " -> end: " N("d"),
      "a@1 d@2 e@3 b@4 b@5 c@6 d@7", "", NULL },
    { "NotFollowedByBeforeOptionalAtTheEnd",
      "start: " N("a") " -> !notPattern: " N("b") " ->> end: " N("c") "?",
      "a@1 c@2 b@3 c@4", "1 2|1", NULL },
    { "NotFollowedByBeforeOptionalTimes",
      "start: " N("a") " -> !notPattern: " N("b") " ->> middle: " N("c") "{2}? -> end: " N("d"),
      "a@1 c@2 b@3 c@4 d@5", "1 2 4 5", NULL },
    /* notNext at the end: the match is the events before, when the next one is not b */
    { "NotNextAtTheEnd", "start: " N("a") " => !notPattern: " N("b"),
      "a@1 c@2 a@3 b@4 a@5 a@6", "1|5", NULL },
    /* Flink 1.16+: notFollowedBy at the end with within, emitted when within expires */
    { "NotFollowedByWithinAtEnd",
      "start: " N("a") " -> !notPattern: " N("b") " within 10ms",
      "a@1 b@15 a@20 b@22 x@40", "1", NULL },
};

static void test_not(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(not_rows) / sizeof(not_rows[0]); i++)
        bad += run_row(&not_rows[i], 0);
    assert_int_equal(bad, 0);
}

/* AfterMatchSkipITCase (all events at one time there: arrival order decides) */
static const struct row skip_rows[] = {
    { "NoSkip", "start: " N("a") "{3} no skip", "a@0 a@0 a@0 a@0 a@0 a@0", "1 2 3|2 3 4|3 4 5|4 5 6", NULL },
    { "NoSkipWithFollowedByAny", "start: " N("a") " ->> end: " N("b") " no skip", "a@0 b@0 a@0 b@0",
      "1 2|1 4|3 4", NULL },
    { "SkipToNextWithFollowedByAny", "start: " N("a") " ->> end: " N("b") " skip to next",
      "a@0 b@0 a@0 b@0", "1 2|3 4", NULL },
    { "NoSkipWithQuantifierAtTheEnd", "start: " N("a") " => end: " N("b") "+ no skip",
      "a@0 b@0 b@0 b@0", "1 2 3 4|1 2 3|1 2", NULL },
    { "SkipToNextWithQuantifierAtTheEnd", "start: " N("a") " => end: " N("b") "+ skip to next",
      "a@0 b@0 b@0 b@0", "1 2", NULL },
    { "SkipPastLast", "start: " N("a") "{3} skip past last event", "a@0 a@0 a@0 a@0 a@0 a@0",
      "1 2 3|4 5 6", NULL },
    { "SkipToFirst",
      "start: contains(name, \"a\"){2} => end: contains(name, \"b\"){2} skip to first end",
      "ab@0 ab@0 ab@0 ab@0 ab@0 ab@0", "1 2 3 4|3 4 5 6", NULL },
    { "SkipToLast",
      "start: contains(name, \"a\"){2} => end: contains(name, \"b\"){2} skip to last end",
      "ab@0 ab@0 ab@0 ab@0 ab@0 ab@0 ab@0", "1 2 3 4|4 5 6 7", NULL },
    { "SkipPastLast2",
      "a: contains(name, \"a\") ->> b: contains(name, \"b\") ->> c: contains(name, \"c\") -> d: "
      "contains(name, \"d\") skip past last event",
      "a1@0 a2@0 b1@0 b2@0 c1@0 c2@0 d1@0 d2@0", "1 3 5 7", NULL },
    { "SkipPastLast3", "a: contains(name, \"a\") => b: contains(name, \"b\") skip past last event",
      "a1@0 c@0 a2@0 b2@0", "3 4", NULL },
    { "SkipToFirstWithOptionalMatch",
      "x: contains(name, \"x\")* => b: contains(name, \"b\") => c: contains(name, \"c\") skip to first b",
      "ab1@0 c1@0 ab2@0 c2@0", "1 2|3 4", NULL },
    { "SkipToFirstAtStartPosition",
      "b: contains(name, \"b\") => c: contains(name, \"c\") skip to first b",
      "ab1@0 c1@0 ab2@0 c2@0", "1 2|3 4", NULL },
    { "SkipToFirstWithOneOrMoreAtBeginning",
      "a: contains(name, \"a\")+ consecutive greedy => b: contains(name, \"b\") skip to first a",
      "a1@0 a2@0 a3@0 b1@0", "1 2 3 4|2 3 4|3 4", NULL },
    { "SkipToLastWithOneOrMoreAtBeginning",
      "a: contains(name, \"a\")+ consecutive greedy => b: contains(name, \"b\") skip to last a",
      "a1@0 a2@0 a3@0 b1@0", "1 2 3 4|3 4", NULL },
    { "SkipPastLastWithOneOrMoreAtBeginning",
      "a: contains(name, \"a\")+ consecutive greedy => b: contains(name, \"b\") skip past last event",
      "a1@0 a2@0 a3@0 b1@0", "1 2 3 4", NULL },
};

static void test_skip(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(skip_rows) / sizeof(skip_rows[0]); i++)
        bad += run_row(&skip_rows[i], 0);
    assert_int_equal(bad, 0);
}


/* IterativeConditionsITCase: conditions over the events a partial match already holds
 * (ctx.getEventsForPattern becomes the stage name; foo events are its SubEvents) */
#define FOO "starts_with(name, \"foo\")"
#define IEV "start@1:1 foo1@2:1 foo2@3:2 start@4:2 foo3@5:3 foo4@5:1 next-one@6:1 end@8:1"
static const struct row iter_rows[] = {
    { "IterativeWithBranchingPatternEager",
      "start: " N("start") " -> middle: " FOO " && sum(middle.price) + price < 5+ -> end: " N("end"),
      IEV, "1 2 3 6 8|1 2 3 8|1 2 8|4 5 6 8|4 5 8", NULL },
    { "IterativeWithBranchingPatternCombinations",
      "start: " N("start") " -> middle: " FOO " && sum(middle.price) + price < 5+ combinations -> end: "
      N("end"),
      IEV, "1 2 3 6 8|1 2 3 8|1 2 5 8|4 5 6 8|1 2 6 8|1 2 8|4 5 8", NULL },
    { "IterativeWithLoopingStartingEager",
      "start: " N("start") " && sum(start.price) + price < 5* -> end: " N("end"),
      "start@1:1 start@2:2 start@3:3 end@4", "1 2 4|1 4|2 4|3 4|4", NULL },
    { "IterativeWithLoopingStartingCombination",
      "start: " N("start") " && sum(start.price) + price < 5* combinations -> end: " N("end"),
      "start@1:1 start@2:2 start@3:3 end@4", "1 2 4|1 3 4|1 4|2 4|3 4|4", NULL },
    { "IterativeWithPrevPatternDependency",
      "start: " N("start") "+ -> end: " N("end") " && sum(start.price) >= 2",
      "start@1:1 start@2:2 end@4", "1 2 3|2 3", NULL },
    { "IterativeWithABACPattern",
      "start: " N("start") " ->> middle1: " FOO " -> middle2: " N("start")
      " && sum(middle2.price) + price <= 5+ -> end: " N("end"),
      "start@1:1 foo1@2:1 start@2:2 start@2:3 foo2@2:2 start@2:4 foo3@2:3 foo4@2:1 end@4:1",
      "1 2 3 4 9|1 2 3 9|1 5 6 9|3 5 6 9|4 5 6 9", NULL },
    { "IterativeWithPrevPatternDependencyAfterBranching",
      "start: " N("start") "+ ->> middle1: " FOO " ->> end: " N("end") " && sum(start.price) >= 2",
      "start@1:1 start@2:2 foo1@4:1 start@5:3 foo2@6:2 end@7:1",
      "1 2 3 6|2 3 6|1 2 5 6|1 2 4 5 6|2 4 5 6|2 5 6|4 5 6", NULL },
    /* ours: prev is the newest event of the partial match; first/last/count */
    { "PrevRising", "a: " N("a") " -> up: price > prev.price+ consecutive",
      "a@1:1 x@2:2 x@3:3 x@4:1", "1 2|1 2 3", NULL },
    { "FirstLastCount",
      "a: " N("a") " -> b: " N("b") "{2,3} -> c: " N("c") " && count(b) == 3 && first(b).price == 1 && "
      "last(b).price == 3",
      "a@1 b@2:1 b@3:2 b@4:3 c@5", "1 2 3 4 5", NULL },
};

static void test_iterative(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(iter_rows) / sizeof(iter_rows[0]); i++)
        bad += run_row(&iter_rows[i], 0);
    assert_int_equal(bad, 0);
}


/* UntilConditionITCase (the until condition: price == 5) */
#define U " until price == 5"
#define UEV "c@1:1 a@3:2 a@4:3 a@6:5 a@7:6"
#define UEV3 "c@1:1 a@3:2 a@4:3 a@5:4 a@6:5 a@7:6"
static const struct row until_rows[] = {
    { "UntilFollowedByOneOrMore", "start: " N("c") " -> middle: " N("a") "+" U " -> end: price == 5",
      UEV, "1 2 3 4|1 2 4", NULL },
    { "UntilFollowedByOneOrMoreCombinations",
      "start: " N("c") " -> middle: " N("a") "+ combinations" U " -> end: price == 5",
      UEV3, "1 2 3 4 5|1 2 3 5|1 2 4 5|1 2 5", NULL },
    { "UntilFollowedByOneOrMoreConsecutive",
      "start: " N("c") " -> middle: " N("a") "+ consecutive" U " -> end: price == 5",
      "c@1:1 a@3:2 a@4:3 a@7:5 a@8:6", "1 2 3 4|1 2 4", NULL },
    { "UntilFollowedByZeroOrMore", "start: " N("c") " -> middle: " N("a") "*" U " -> end: price == 5",
      UEV, "1 2 3 4|1 2 4|1 4", NULL },
    { "UntilFollowedByZeroOrMoreCombinations",
      "start: " N("c") " -> middle: " N("a") "* combinations" U " -> end: price == 5",
      UEV3, "1 2 3 4 5|1 2 3 5|1 2 4 5|1 2 5|1 5", NULL },
    { "UntilFollowedByZeroOrMoreConsecutive",
      "start: " N("c") " -> middle: " N("a") "* consecutive" U " -> end: price == 5",
      "c@1:1 a@3:2 a@4:3 a@7:5 a@8:6", "1 2 3 4|1 2 4|1 4", NULL },
    { "UntilFollowedByAnyOneOrMore", "start: " N("c") " ->> middle: " N("a") "+" U,
      UEV, "1 2 3|1 2|1 3|1 5", NULL },
    { "UntilFollowedByAnyZeroOrMore", "start: " N("c") " ->> middle: " N("a") "*" U,
      UEV, "1 2 3|1 2|1 3|1 5|1", NULL },
};

static void test_until(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(until_rows) / sizeof(until_rows[0]); i++)
        bad += run_row(&until_rows[i], 0);
    assert_int_equal(bad, 0);
}

/* TimesRangeITCase (ConsecutiveData: c, a, a, a, b) */
#define CONS "c@1 f@2 a@3 f@4 a@5 a@6 b@7"
static const struct row times_rows[] = {
    { "TimesRange", "start: " N("c") " => middle: " N("a") "{1,3} combinations -> end1: " N("b"),
      "c@1 a@2 a@3 a@4 b@6", "1 2 3 4 5|1 2 3 5|1 2 4 5|1 2 5", NULL },
    { "TimesRangeFromZero", "start: " N("c") " => middle: " N("a") "{0,2} combinations -> end1: " N("b"),
      "c@1 a@2 a@3 a@4 b@6", "1 2 3 5|1 2 4 5|1 2 5|1 5", NULL },
    { "TimesRangeNonStrict", "start: " N("c") " ->> middle: " N("a") "{1,3} combinations -> end1: " N("b"),
      CONS, "1 3 5 6 7|1 3 5 7|1 3 6 7|1 5 6 7|1 3 7|1 5 7|1 6 7", NULL },
    { "TimesRangeStrict", "start: " N("c") " ->> middle: " N("a") "{0,3} consecutive -> end1: " N("b"),
      CONS, "1 5 6 7|1 3 7|1 5 7|1 6 7|1 7", NULL },
    { "TimesRangeStrictOptional", "start: " N("c") " ->> middle: " N("a") "{1,3}? consecutive -> end1: " N("b"),
      CONS, "1 5 6 7|1 3 7|1 5 7|1 6 7|1 7", NULL },
    { "TimesRangeStrictOptional1", "start: " N("c") " => middle: " N("a") "{1,3}? consecutive -> end1: " N("b"),
      "c@1 a@3 a@5 a@6 b@7", "1 2 3 4 5|1 2 3 5|1 2 5|1 5", NULL },
    { "TimesRangeNonStrictOptional1", "start: " N("c") " -> middle: " N("a") "{1,3}? -> end1: " N("b"),
      "c@1 f@2 b@7", "1 3", NULL },
    { "TimesRangeNonStrictOptional2",
      "start: " N("c") " ->> middle: " N("a") "{2,3}? combinations -> end1: " N("b"),
      CONS, "1 3 5 6 7|1 3 5 7|1 3 6 7|1 5 6 7|1 7", NULL },
};

/* TimesOrMoreITCase (without a per-stage time) */
static const struct row times_more_rows[] = {
    { "TimesOrMore", "start: " N("c") " -> middle: " N("a") "{2,} combinations -> end1: " N("b"),
      "c@1 a@2 a@3 a@4 b@6", "1 2 3 4 5|1 2 3 5|1 2 4 5", NULL },
    { "TimesOrMoreNonStrict", "start: " N("c") " ->> middle: " N("a") "{2,} combinations -> end1: " N("b"),
      CONS, "1 3 5 6 7|1 3 5 7|1 3 6 7|1 5 6 7", NULL },
    { "TimesOrMoreStrict", "start: " N("c") " ->> middle: " N("a") "{2} consecutive -> end1: " N("b"),
      CONS, "1 5 6 7", NULL },
    { "TimesOrMoreStrictOptional",
      "start: " N("c") " ->> middle: " N("a") "{2,}? consecutive -> end1: " N("b"),
      CONS, "1 5 6 7|1 7", NULL },
    { "TimesOrMoreStrictOptional2",
      "start: " N("c") " => middle: " N("a") "{2,}? consecutive -> end1: " N("b"),
      "c@1 a@3 a@5 a@6 b@7", "1 2 3 4 5|1 2 3 5|1 5", NULL },
    { "TimesOrMoreNonStrictOptional", "start: " N("c") " -> middle: " N("a") "{2,}? -> end1: " N("b"),
      "c@1 f@2 b@7", "1 3", NULL },
    { "TimesOrMoreNonStrictOptional2",
      "start: " N("c") " ->> middle: " N("a") "{2,}? combinations -> end1: " N("b"),
      CONS, "1 3 5 6 7|1 3 5 7|1 5 6 7|1 7|1 3 6 7", NULL },
};

static void test_times(void **state)
{
    int bad = 0;
    (void)state;
    for (size_t i = 0; i < sizeof(times_rows) / sizeof(times_rows[0]); i++)
        bad += run_row(&times_rows[i], 0);
    for (size_t i = 0; i < sizeof(times_more_rows) / sizeof(times_more_rows[0]); i++)
        bad += run_row(&times_more_rows[i], 0);
    assert_int_equal(bad, 0);
}

/* The language: errors name a column */
static void test_errors(void **state)
{
    static const struct { const char *src; long col; const char *text; } bad[] = {
        { "a: x == 1 -> b x == 2", 16, "expected ':' after the stage name" },
        { "a: x == 1 -> b: x ==", 21, "stage 'b'" },
        { "!a: x == 1 -> b: x", 2, "cannot start with a negated stage" },
        { "a: x -> !b: y", 10, "only with within" },
        { "a: x -> b: y{2,1}", 9, "less than" },
        { "a: x -> a: y", 9, "two stages are named 'a'" },
        { "a: x -> b: y within 3 parsecs", 21, "within: expected a duration" },
        { "a: x -> b: y skip to first c", 14, "no stage named 'c'" },
        { "a: x -> b: y+ consecutive combinations", 15, "either consecutive or combinations, once" },
        { "a: x -> b: y+ combinations greedy", 15, "greedy does not apply with combinations" },
        { "a: x -> b: y+ greedy greedy", 15, "greedy is given twice" },
        { "a: x -> b: y+ greedy consecutive", 0, NULL },
        { "a: x -> b: y+ until", 15, "expected a condition after until" },
        { "a: x -> b: y{4294967298}", 13, "a count is at most 100000" },
        { "a: x -> b: y{2,100001}", 13, "a count is at most 100000" },
        { "a: x -> b: y{100000}", 0, NULL },
        { "a: x -> b: y within 1s within 2s", 24, "within is given twice" },
        { "a: x -> b: y skip to next within 1s skip past last event", 37, "a skip strategy is given twice" },
        { "a: x -> b: t == \"b", 17, "a string that is never closed (no \" after it)" },
        { "a: x -> b: t == 'y within 5s", 17, "never closed (no ' after it)" },
        { "a: x+ greedy", 1, NULL },
        { "a: x greedy -> b: y", 1, "greedy applies to a quantified stage" },
        { "a: x -> b: y{2} until z", 9, "until applies to a stage that loops" },
        { "a: x -> b: }", 12, "stage 'b'" }, /* a fuzz find: a '}' that closes no '{' */
        { "a: x -> b: y? -> !c: z -> d: w", 19, "cannot follow an optional stage" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tlm_error err;
        memset(&err, 0, sizeof(err));
        struct tlm_cep_pattern *p = tlm_cep_pattern_parse(bad[i].src, &err);
        if (!bad[i].text) {
            assert_non_null(p);
            tlm_cep_pattern_destroy(p);
            continue;
        }
        if (p || !strstr(err.text, bad[i].text) || err.column != bad[i].col)
            fprintf(stderr, "# %s: column %ld: %s\n", bad[i].src, err.column, err.text);
        assert_null(p);
        assert_non_null(strstr(err.text, bad[i].text));
        assert_int_equal(err.column, bad[i].col);
    }
}

/* A document and the one-line form give the same NFA; to_json round-trips */
static void test_documents(void **state)
{
    struct tlm_error err;
    (void)state;
    json_t *doc = json_loads("{\"id\":\"cart\",\"stages\":["
                             "{\"name\":\"start\",\"where\":\"metric == \\\"app_start\\\"\"},"
                             "{\"name\":\"items\",\"where\":\"metric == \\\"add\\\"\",\"min\":1,\"max\":null},"
                             "{\"name\":\"checkout\",\"where\":\"metric == \\\"checkout\\\"\","
                             "\"contiguity\":\"notFollowedBy\"}],\"within\":\"24h\"}", 0, NULL);
    struct tlm_cep_pattern *a = tlm_cep_pattern_from_json(doc, &err);
    assert_non_null(a);
    struct tlm_cep_pattern *b = tlm_cep_pattern_parse(
        "start: metric == \"app_start\" -> items: metric == \"add\"+ -> !checkout: metric == "
        "\"checkout\" within 24h", &err);
    assert_non_null(b);
    tlm_cep_pattern_set_id(b, "cart");
    json_t *ja = tlm_cep_pattern_to_json(a), *jb = tlm_cep_pattern_to_json(b);
    assert_true(json_equal(ja, jb));
    struct tlm_cep_pattern *c = tlm_cep_pattern_from_json(ja, &err);
    assert_non_null(c);
    json_t *jc = tlm_cep_pattern_to_json(c);
    assert_true(json_equal(ja, jc));
    json_decref(ja);
    json_decref(jb);
    json_decref(jc);
    json_decref(doc);
    tlm_cep_pattern_destroy(a);
    tlm_cep_pattern_destroy(b);
    tlm_cep_pattern_destroy(c);

    /* the "pattern" form: "within" and "skip" members are its trailing clauses (the same
     * pattern as the text with them), and not both */
    doc = json_loads("{\"id\":\"cart\",\"pattern\":\"start: metric == \\\"app_start\\\" -> "
                     "items: metric == \\\"add\\\"+ -> !checkout: metric == \\\"checkout\\\"\","
                     "\"within\":\"24h\",\"skip\":\"skip past last event\"}", 0, NULL);
    assert_non_null(doc);
    a = tlm_cep_pattern_from_json(doc, &err);
    assert_non_null(a);
    b = tlm_cep_pattern_parse("start: metric == \"app_start\" -> items: metric == \"add\"+ -> "
                              "!checkout: metric == \"checkout\" within 24h skip past last event", &err);
    assert_non_null(b);
    tlm_cep_pattern_set_id(b, "cart");
    ja = tlm_cep_pattern_to_json(a);
    jb = tlm_cep_pattern_to_json(b);
    assert_true(json_equal(ja, jb));
    json_decref(ja);
    json_decref(jb);
    json_decref(doc);
    tlm_cep_pattern_destroy(a);
    tlm_cep_pattern_destroy(b);
    /* documents refused, and the reason */
    static const struct { const char *doc, *text; } refused[] = {
        { "{\"pattern\":\"a: x -> b: y within 1s\",\"within\":\"2s\"}", "\"within\": within is given twice" },
        { "{\"pattern\":\"a: x -> b: y\",\"wihtin\":\"5m\"}", "unknown member \"wihtin\"" },
        { "{\"stages\":[{\"name\":\"a\",\"where\":\"x\"},{\"name\":\"b\",\"wehre\":\"y\"}]}",
          "stage 2: unknown member \"wehre\"" },
        { "{\"pattern\":\"a: x -> b: y\",\"within\":\"5 minutes\"}", "\"within\": within: expected a duration" },
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        doc = json_loads(refused[i].doc, 0, NULL);
        assert_non_null(doc);
        assert_null(tlm_cep_pattern_from_json(doc, &err));
        assert_non_null(strstr(err.text, refused[i].text));
        json_decref(doc);
    }
}


/* The fast form of `field OP literal` (evaluated on the scanned value, no DOM) agrees with
 * the expression language on every type of value, escapes and missing fields included. */
static size_t count_matches(const char *pat, const char *const *lines, size_t n, int fast)
{
    struct tlm_error err;
    struct got g;
    struct tlm_cep *c = tlm_cep_create();
    struct tlm_cep_pattern *p = tlm_cep_pattern_parse(pat, &err);
    const struct tlm_path *paths;
    memset(&g, 0, sizeof(g));
    assert_non_null(p);
    assert_int_equal(tlm_cep_add(c, p, &err), 0);
    size_t np = tlm_cep_paths(c, &paths);
    struct tlm_jscan *js = tlm_jscan_create(paths, np);
    struct tlm_jval vals[8];
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(tlm_jscan_run(js, lines[i], strlen(lines[i]), vals, &err), 0);
        assert_int_equal(tlm_cep_push(c, "\"k\"", 3, (tlm_time_t)i, lines[i], strlen(lines[i]),
                                      fast ? vals : NULL, &err), 0);
    }
    struct tlm_cep_sink sink = { &g, sink_emit, 0 };
    assert_int_equal(tlm_cep_advance(c, INT64_MAX, &sink, &err), 0);
    for (size_t i = 0; i < g.nm; i++)
        free(g.m[i]);
    tlm_jscan_destroy(js);
    tlm_cep_destroy(c);
    return g.nm;
}

static void test_fast_form(void **state)
{
    static const char *const lines[] = {
        "{\"id\":1,\"f\":\"abc\"}", "{\"id\":2,\"f\":\"ab\"}", "{\"id\":3,\"f\":\"a\\u0062c\"}",
        "{\"id\":4,\"f\":3}", "{\"id\":5,\"f\":3.0}", "{\"id\":6,\"f\":-2.5e1}",
        "{\"id\":7,\"f\":true}", "{\"id\":8,\"f\":null}", "{\"id\":9}", "{\"id\":10,\"f\":{}}",
        "{\"id\":11,\"f\":[3]}", "{\"id\":12,\"f\":\"\"}", "{\"id\":13,\"f\":\"abd\"}",
        "{\"id\":14,\"g\":{\"h\":3}}", "{\"id\":15,\"g\":{\"h\":\"3\"}}",
    };
    static const char *const ops[] = { "==", "!=", "<", "<=", ">", ">=" };
    static const char *const lits[] = { "\"abc\"", "\"ab\"", "\"\"", "3", "-25", "2.5" };
    char pat[128];
    (void)state;
    for (size_t o = 0; o < 6; o++)
        for (size_t l = 0; l < 6; l++) {
            snprintf(pat, sizeof(pat), "x: f %s %s", ops[o], lits[l]);
            size_t a = count_matches(pat, lines, 15, 1), b = count_matches(pat, lines, 15, 0);
            if (a != b)
                fprintf(stderr, "# %s: fast %zu, expr %zu\n", pat, a, b);
            assert_int_equal(a, b);
            snprintf(pat, sizeof(pat), "x: g.h %s %s", ops[o], lits[l]);
            assert_int_equal(count_matches(pat, lines, 15, 1), count_matches(pat, lines, 15, 0));
        }
}


/* A rule set changes while events flow: a pattern added mid-stream also sees the events
 * still buffered; a removed one drops its partial matches and nothing else changes. */
static int sink_ids(void *arg, const struct tlm_cep_match *m, struct tlm_error *err)
{
    char *buf = arg;
    (void)err;
    strcat(buf, tlm_cep_pattern_id(m->pattern));
    strcat(buf, ":");
    for (size_t i = 0; i < m->nstages; i++)
        for (size_t k = 0; k < m->count[i]; k++) {
            json_t *e = tlm_cep_event_json(m->events[i][k]);
            char t[16];
            snprintf(t, sizeof(t), "%d,", (int)json_integer_value(json_object_get(e, "id")));
            strcat(buf, t);
        }
    strcat(buf, m->timeout ? "T " : " ");
    return 0;
}

static void push_named(struct tlm_cep *c, int id, const char *name, long long ts)
{
    char line[128];
    struct tlm_error err;
    snprintf(line, sizeof(line), "{\"id\":%d,\"name\":\"%s\"}", id, name);
    assert_int_equal(tlm_cep_push(c, "\"k\"", 3, ts, line, strlen(line), NULL, &err), 0);
}

static struct tlm_cep_pattern *parse_id(const char *src, const char *id)
{
    struct tlm_error err;
    struct tlm_cep_pattern *p = tlm_cep_pattern_parse(src, &err);
    assert_non_null(p);
    assert_int_equal(tlm_cep_pattern_set_id(p, id), 0);
    return p;
}

static void test_dynamic_set(void **state)
{
    struct tlm_error err;
    char out[1024] = "";
    struct tlm_cep_sink sink = { out, sink_ids, 0 };
    (void)state;
    struct tlm_cep *c = tlm_cep_create();
    assert_int_equal(tlm_cep_add(c, parse_id("a: name == \"x\" -> b: name == \"y\"", "A"), &err), 0);
    push_named(c, 1, "x", 1);
    assert_int_equal(tlm_cep_advance(c, 1, &sink, &err), 0);
    push_named(c, 2, "y", 2);
    /* added while y is still buffered: B sees y */
    assert_int_equal(tlm_cep_add(c, parse_id("c: name == \"y\" -> d: name == \"z\" within 10ns", "B"), &err), 0);
    assert_int_equal(tlm_cep_add(c, parse_id("e: true", "A"), &err), TLM_EINVAL);
    push_named(c, 3, "z", 3);
    assert_int_equal(tlm_cep_advance(c, INT64_MAX, &sink, &err), 0);
    assert_string_equal(out, "A:1,2, B:2,3, ");
    tlm_cep_destroy(c);

    out[0] = 0;
    c = tlm_cep_create();
    assert_int_equal(tlm_cep_add(c, parse_id("a: name == \"x\" -> b: name == \"y\" within 100ns", "A"), &err), 0);
    assert_int_equal(tlm_cep_add(c, parse_id("c: name == \"x\" -> d: name == \"z\" within 100ns", "B"), &err), 0);
    push_named(c, 1, "x", 1);
    push_named(c, 2, "q", 2);
    assert_int_equal(tlm_cep_advance(c, 2, &sink, &err), 0);
    struct tlm_cep_stats st;
    tlm_cep_stats(c, &st);
    assert_int_equal(st.partial, 2);
    assert_int_equal(tlm_cep_remove(c, "A", &err), 0);
    assert_int_equal(tlm_cep_remove(c, "A", &err), TLM_ENOTFOUND);
    tlm_cep_stats(c, &st);
    assert_int_equal(st.partial, 1);
    assert_null(tlm_cep_get(c, 0));
    /* A replaced: a new A sees the events from now on */
    assert_int_equal(tlm_cep_add(c, parse_id("a: name == \"y\"", "A"), &err), 0);
    push_named(c, 3, "y", 3);
    push_named(c, 4, "z", 4);
    assert_int_equal(tlm_cep_advance(c, INT64_MAX, &sink, &err), 0);
    assert_string_equal(out, "A:3, B:1,4, ");
    tlm_cep_destroy(c);
}


/* Emit templates: the member paths they read are built from the scanned line (no DOM),
 * with the same result as over the whole events; other uses take the whole event. */
struct tpl_case {
    const char *src;
    int partial;
    const char *want;
};

static int sink_tpl(void *arg, const struct tlm_cep_match *m, struct tlm_error *err)
{
    const struct tpl_case *tc = arg;
    struct tlm_cep_template *t = tlm_cep_template_create(m->pattern, tc->src, err);
    json_t *out = NULL;
    assert_non_null(t);
    assert_int_equal(tlm_cep_template_partial(t), tc->partial);
    assert_int_equal(tlm_cep_template_eval(t, m, &out, err), 1);
    char *got = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
    if (strcmp(got, tc->want))
        fprintf(stderr, "# %s\n#   got    %s\n#   wanted %s\n", tc->src, got, tc->want);
    assert_string_equal(got, tc->want);
    free(got);
    json_decref(out);
    tlm_cep_template_destroy(t);
    return 0;
}

static void test_templates(void **state)
{
    static const struct tpl_case cases[] = {
        { "{\"k\": key, \"d\": end.t - start.t, \"n\": count(items), \"s\": sum(items.p), "
          "\"f\": first(items).sku, \"l\": last( items ).sku, \"deep\": start.a.b, \"no\": end.zz}",
          1, "{\"k\":\"u1\",\"d\":9,\"n\":2,\"s\":5.5,\"f\":\"x\",\"l\":\"y\",\"deep\":[1]}" },
        { "[start.a, items[1].sku, items[*].p]", 1, "[{\"b\":[1]},\"y\",[2,3.5]]" },
        { "{\"whole\": end, \"i0\": items[0]}", 0,
          "{\"whole\":{\"m\":\"e\",\"t\":10},\"i0\":{\"m\":\"i\",\"t\":2,\"sku\":\"x\",\"p\":2}}" },
        { "count(items) + length(start)", 0, "6" },
    };
    static const char *const lines[] = {
        "{\"m\":\"s\",\"t\":1,\"a\":{\"b\":[1]},\"c\":\"\\u0041\"}",
        "{\"m\":\"i\",\"t\":2,\"sku\":\"x\",\"p\":2}",
        "{\"m\":\"i\",\"t\":3,\"sku\":\"y\",\"p\":3.5}",
        "{\"m\":\"e\",\"t\":10}",
    };
    (void)state;
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct tlm_error err;
        struct tlm_cep *c = tlm_cep_create();
        struct tlm_cep_pattern *p = tlm_cep_pattern_parse(
            "start: m == \"s\" -> items: m == \"i\"+ greedy -> end: m == \"e\"", &err);
        assert_int_equal(tlm_cep_add(c, p, &err), 0);
        for (size_t i = 0; i < 4; i++)
            assert_int_equal(tlm_cep_push(c, "\"u1\"", 4, (tlm_time_t)i, lines[i],
                                          strlen(lines[i]), NULL, &err), 0);
        struct tlm_cep_sink sink = { (void *)&cases[k], sink_tpl, 0 };
        assert_int_equal(tlm_cep_advance(c, INT64_MAX, &sink, &err), 0);
        tlm_cep_destroy(c);
    }
}


/* Snapshots: for a set of patterns (every contiguity, loops, negations, within, skip
 * strategies, pending matches) and random keyed events, a run cut anywhere by a save and
 * a load into a new engine writes exactly (and in the same order) what one run writes. */
static int put_rec(void *arg, const json_t *rec)
{
    return json_array_append(arg, (json_t *)rec);
}

static void run_cut(const char *pat, const char *const *lines, const long long *ts, size_t n,
                    size_t cut, char *out)
{
    struct tlm_error err;
    struct tlm_cep_sink sink = { out, sink_ids, 0 };
    struct tlm_cep *c = tlm_cep_create();
    assert_int_equal(tlm_cep_add(c, parse_id(pat, "P"), &err), 0);
    long long wm = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == cut) { /* snapshot, then go on in a new engine */
            json_t *recs = json_array();
            assert_int_equal(tlm_cep_save(c, put_rec, recs, &err), 0);
            tlm_cep_destroy(c);
            c = tlm_cep_create();
            assert_int_equal(tlm_cep_add(c, parse_id(pat, "P"), &err), 0);
            size_t k;
            json_t *r;
            json_array_foreach(recs, k, r)
                assert_int_equal(tlm_cep_load(c, r, &err), 0);
            json_decref(recs);
        }
        char key[8];
        snprintf(key, sizeof(key), "\"k%d\"", (int)(i % 3));
        assert_int_equal(tlm_cep_push(c, key, strlen(key), ts[i], lines[i], strlen(lines[i]),
                                      NULL, &err), 0);
        if (ts[i] - 3 > wm) {
            wm = ts[i] - 3;
            assert_int_equal(tlm_cep_advance(c, wm, &sink, &err), 0);
        }
    }
    assert_int_equal(tlm_cep_advance(c, INT64_MAX, &sink, &err), 0);
    tlm_cep_destroy(c);
}

static void test_snapshot_cut(void **state)
{
    static const char *const pats[] = {
        "a: " N("a") " -> b: " N("b") "+ -> c: " N("c") " within 20ns",
        "a: " N("a") " ->> b: " N("b") "* combinations -> c: " N("c") " within 30ns skip past last event",
        "a: " N("a") " => b: " N("b") "{2,3} -> !d: " N("d") " -> c: " N("c") " within 25ns",
        "a: " N("a") " -> !d: " N("d") " within 15ns",
        "a: " N("a") "{2} consecutive -> e: " N("e") " within 40ns skip to next",
        "a: " N("a") " -> b: price > a.price+ greedy -> c: " N("c") " within 30ns skip to first b",
    };
    const char *names = "abcde";
    char lines[120][64];
    const char *lp[120];
    long long ts[120];
    unsigned r = 12345;
    (void)state;
    for (size_t i = 0; i < 120; i++) {
        r = r * 1103515245u + 12345u;
        ts[i] = (long long)i * 2 + (long long)((r >> 16) % 3); /* disorder within 3 */
        snprintf(lines[i], sizeof(lines[i]), "{\"id\":%d,\"name\":\"%c\",\"price\":%u}",
                 (int)i + 1, names[(r >> 8) % 5], (r >> 4) % 10);
        lp[i] = lines[i];
    }
    for (size_t p = 0; p < sizeof(pats) / sizeof(pats[0]); p++) {
        static char want[65536], got[65536];
        want[0] = 0;
        run_cut(pats[p], lp, ts, 120, 1000, want);
        assert_true(strlen(want) > 0 && strlen(want) < 32768);
        for (size_t cut = 1; cut < 120; cut += 7) {
            got[0] = 0;
            run_cut(pats[p], lp, ts, 120, cut, got);
            if (strcmp(want, got))
                fprintf(stderr, "# %s, cut at %zu:\n#   one run %s\n#   cut     %s\n", pats[p], cut,
                        want, got);
            assert_string_equal(want, got);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nfa),
        cmocka_unit_test(test_nfa2),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_not),
        cmocka_unit_test(test_skip),
        cmocka_unit_test(test_iterative),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_until),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_fast_form),
        cmocka_unit_test(test_dynamic_set),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_snapshot_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
