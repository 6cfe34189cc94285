/*
 * cep_int.h - private declarations shared by cep_pattern.c (language, documents, NFA
 * compiler) and cep.c (the engine). Not for other modules: include cep.h.
 *
 * The compiled NFA is Flink's (NFACompiler): states with TAKE, IGNORE and PROCEED edges,
 * each guarded by a small condition tree over the stages' conditions, compiled from the
 * last stage to the first, with Stop states for negated stages and a Pending state for a
 * pattern that ends in notFollowedBy with a within.
 */
#ifndef TLM_CEP_INT_H
#define TLM_CEP_INT_H

#include "cep.h"
#include "expr.h"

/* Consuming strategies (contiguity towards the previous stage, or inside a loop). */
enum { CEP_STRICT, CEP_RELAXED, CEP_ANY, CEP_NOT_NEXT, CEP_NOT_FOLLOW };
/* After-match skip strategies. */
enum { CEP_NO_SKIP, CEP_SKIP_NEXT, CEP_SKIP_PAST_LAST, CEP_SKIP_FIRST, CEP_SKIP_LAST };
/* Edge actions and state types. */
enum { CEP_TAKE, CEP_IGNORE, CEP_PROCEED };
enum { CEP_NORMAL, CEP_FINAL, CEP_STOP, CEP_PENDING };
/* Condition tree nodes. */
enum { CC_TRUE, CC_STAGE, CC_NOT, CC_AND, CC_OR, CC_UNTIL };

/* A comparison of one field with a literal, evaluated on the scanned value (no DOM). */
struct cep_fast {
    int ok;                  /* this stage's condition has this form */
    int op;                  /* 0 ==, 1 !=, 2 <, 3 <=, 4 >, 5 >= */
    int is_str;              /* literal is a string (else a number) */
    char *str;               /* the string literal, unescaped */
    size_t slen;
    double num;
    size_t path;             /* index into the engine's path list (set by tlm_cep_paths) */
    struct tlm_path p;       /* the field */
};

struct cep_stage {
    char *name;
    long col;                /* 1-based column of the name in the one-line form, or 0 */
    char *src;               /* the condition as written */
    long srccol;             /* its 1-based column in the one-line form, or 0 */
    struct tlm_expr *expr;   /* compiled (looping stage names rewritten) */
    char *until_src;         /* until(): the loop's stop condition as written, or NULL */
    struct tlm_expr *until;  /* compiled, evaluated per partial match and event */
    int iterative;           /* reads other stages or prev: evaluated per partial match */
    int contig;              /* towards the previous stage (CEP_*); stage 0: CEP_STRICT */
    int min, max;            /* times; max -1 = unbounded (looping) */
    int optional, greedy;
    int inner;               /* inside the loop: CEP_STRICT, CEP_RELAXED or CEP_ANY */
    struct cep_fast fast;
    const struct tlm_path *paths; /* root paths of expr (borrowed from it), npaths -1 = all */
    long npaths;
};

struct cep_cond { int kind, a, b; };
struct cep_edge { int action, cond, target; };
struct cep_state {
    int stage;               /* stage index, -1 for the final state */
    int type;                /* CEP_NORMAL ... */
    struct cep_edge *e;
    int ne, cap;
};

struct tlm_cep_pattern {
    char *id;
    struct cep_stage *st;
    size_t n;
    int64_t within;
    int skip, skip_stage;
    struct cep_state *s;
    int ns, scap;
    struct cep_cond *c;
    int nc, ccap;
    int start;               /* the start state */
    int loops[64];           /* stage binds an array */
};

#define CEP_MAX_STAGES 64

#endif
