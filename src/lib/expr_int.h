/*
 * expr_int.h - private declarations shared by the expr_*.c files (not installed, not for
 * other modules: include expr.h instead).
 *
 * Pipeline: expr_lex.c turns bytes into tokens on demand (the parser pulls one at a time
 * because JSONPath is whitespace-sensitive in places), expr_parse.c builds a tree of
 * struct node and checks it, expr_eval.c walks the tree, expr_regex.c compiles and runs
 * I-Regexp (RFC 9485) patterns, expr_ucd.c holds the Unicode category table.
 *
 * Invariants: a compiled tree is never modified after tlm_expr_compile returns; every
 * literal json_t in it is owned by the tree; every regex cached on a node is owned by it.
 */
#ifndef TLM_EXPR_INT_H
#define TLM_EXPR_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "expr.h"
#include "path.h"

/* ---- lexer ------------------------------------------------------------------------ */

enum tok_kind {
    T_EOF, T_NUM, T_STR, T_IDENT, T_DOLLAR, T_AT, T_DOT, T_DOTDOT, T_LBRACK, T_RBRACK,
    T_LPAREN, T_RPAREN, T_LBRACE, T_RBRACE, T_COMMA, T_COLON, T_QUESTION, T_STAR,
    T_PLUS, T_MINUS, T_SLASH, T_PERCENT, T_NOT, T_AND, T_OR, T_EQ, T_NE, T_LT, T_LE,
    T_GT, T_GE, T_ERROR
};

struct token {
    int kind;          /* enum tok_kind */
    size_t pos;        /* byte offset of the first byte */
    size_t len;        /* length in bytes of the source text */
    int ws_before;     /* blanks precede the token */
    json_t *num;       /* T_NUM: the value (owned by the token until taken) */
    char *str;         /* T_STR: unescaped text (malloc'd, owned until taken) */
    size_t slen;       /* T_STR: length of str (may hold NUL bytes) */
    const char *msg;   /* T_ERROR: reason; pos is where */
};

struct lexer {
    const char *src;   /* borrowed for the compile */
    size_t len;        /* strlen(src) */
    size_t pos;        /* next byte to read */
};

int tlm_expr_is_blank(int c);
void tlm_expr_lex_next(struct lexer *lx, struct token *t);
void tlm_expr_tok_clear(struct token *t);
/* Reads a dot-notation member name at lx->pos (no blanks allowed). Returns its length,
 * 0 if none starts there. */
size_t tlm_expr_lex_name(const struct lexer *lx, size_t pos);

/* ---- tree ------------------------------------------------------------------------- */

enum node_kind {
    N_LIT,     /* lit */
    N_PATH,    /* base + segments */
    N_NOT,     /* kids[0] */
    N_NEG,     /* kids[0] */
    N_AND, N_OR,               /* kids[0], kids[1] */
    N_CMP,     /* op = T_EQ..T_GE */
    N_ARITH,   /* op = T_PLUS, T_MINUS, T_STAR, T_SLASH, T_PERCENT */
    N_IN,      /* kids[0] in kids[1] */
    N_CALL,    /* fn, kids = arguments */
    N_ARR,     /* kids = elements */
    N_OBJ,     /* keys[i] : kids[i] */
    N_EXISTS   /* kids[0] is a query: true when it selects a node (RFC 9535 test-expr) */
};

enum base_kind { B_ROOT, B_CURRENT, B_BINDING, B_EXPR };
enum sel_kind { S_NAME, S_INDEX, S_WILD, S_SLICE, S_FILTER };

struct node;

struct sel {
    int kind;                /* enum sel_kind */
    char *name;              /* S_NAME: member name (owned), may hold NUL bytes */
    size_t namelen;          /* S_NAME: its length */
    json_int_t idx;          /* S_INDEX */
    json_int_t start, end, step; /* S_SLICE */
    int has_start, has_end;  /* S_SLICE: bounds given */
    struct node *filter;     /* S_FILTER: logical expression (owned) */
};

struct seg {
    int desc;                /* descendant segment (..) */
    size_t nsel;
    struct sel *sel;         /* owned */
};

struct func;
struct tlm_regex;

struct node {
    int kind;                /* enum node_kind */
    int op;                  /* N_CMP, N_ARITH: operator token kind */
    long col;                /* 1-based column of the operator or primary */
    json_t *lit;             /* N_LIT: owned */
    struct node **kids;      /* owned */
    size_t nkids;
    char **keys;             /* N_OBJ: owned NUL-terminated keys */
    int base;                /* N_PATH: enum base_kind */
    size_t binding;          /* N_PATH B_BINDING: index into the compiled binding names */
    struct seg *segs;        /* N_PATH: owned */
    size_t nsegs;
    int singular;            /* N_PATH: only single name/index child segments */
    int paren;               /* parenthesized (strict typing) */
    const struct func *fn;   /* N_CALL */
    struct tlm_regex *re;    /* N_CALL match/search with a literal pattern: owned */
};

struct tlm_expr {
    struct node *root;       /* owned */
    char **bindings;         /* owned copies of the binding names */
    size_t nbindings;
    struct tlm_path *paths;  /* root paths (owned); NULL with npaths -1 when whole doc */
    long npaths;
};

struct tlm_jsonpath {
    struct node *root;       /* an N_PATH with base B_ROOT (owned) */
};

/* Functions: eval returns 1 (value in *out, new or borrowed per *owned), 0 nothing,
 * negative error. */
struct evalctx;
struct val {
    json_t *j;     /* NULL = nothing */
    int owned;     /* j holds a reference we must drop */
    int nodes;     /* j is an array standing for a node list (from a non-singular query) */
};

enum rfc_type { RT_NONE, RT_VALUE, RT_LOGICAL, RT_NODES };

struct func {
    const char *name;
    int min, max;            /* argument counts; max -1 = any */
    int rfc;                 /* one of the RFC 9535 standard functions */
    int rtype;               /* enum rfc_type of the result */
    int ptype[2];            /* enum rfc_type of the parameters (RFC functions) */
    int (*fn)(struct evalctx *cx, const struct node *n, struct val *args, struct val *out);
};

const struct func *tlm_expr_func_find(const char *name, size_t len);

void tlm_expr_node_free(struct node *n);
struct node *tlm_expr_parse(const char *src, int strict, char **bindings, size_t nb,
                            struct tlm_error *err);

/* Evaluation entry points (expr_eval.c). */
int tlm_expr_eval_node(const struct node *n, json_t *root, const struct tlm_expr *e,
                       const struct tlm_expr_env *env, struct val *out, struct tlm_error *err);
int tlm_expr_truthy(const struct val *v);
void tlm_expr_val_drop(struct val *v);
json_t *tlm_expr_query(const struct node *path, json_t *root, json_t **paths_out);

/* ---- regex (expr_regex.c) ----------------------------------------------------------- */

/* Compiles an I-Regexp. Returns NULL with *why set (static text) on a bad pattern or
 * allocation failure. */
struct tlm_regex *tlm_regex_compile(const char *pat, size_t len, const char **why);
void tlm_regex_free(struct tlm_regex *re);
/* full = 1: the whole string must match (match()); 0: any substring (search()).
 * Returns 1 match, 0 no match, negative on allocation failure. */
int tlm_regex_exec(const struct tlm_regex *re, const char *s, size_t len, int full);

/* ---- Unicode categories (expr_ucd.c) ------------------------------------------------ */

struct tlm_expr_ucd_run {
    uint32_t lo, hi; /* inclusive code point range */
    unsigned cat;    /* index into tlm_expr_ucd_names */
};
extern const char tlm_expr_ucd_names[30][3];
extern const struct tlm_expr_ucd_run tlm_expr_ucd_runs[];
extern const size_t tlm_expr_ucd_nruns;

#endif
