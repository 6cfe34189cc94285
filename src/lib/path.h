/*
 * path.h - a plain member path from the root of an event: ["mem", "used"] for mem.used.
 *
 * Shared by the expression compiler (which reports the paths an expression reads) and the
 * JSON scanner (which extracts exactly those paths from a line without building a DOM).
 */
#ifndef TLM_PATH_H
#define TLM_PATH_H

#include <stddef.h>

struct tlm_path {
    size_t nseg;  /* number of member names, >= 1 */
    char **seg;   /* NUL-terminated member names, unescaped UTF-8 (no embedded NUL) */
};

#endif
