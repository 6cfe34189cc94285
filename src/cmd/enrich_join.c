/* enrich_join.c - stub (replaced below) */
#include <stdlib.h>
#include "enrich_join.h"
struct join { int x; };
struct join *join_create(const struct join_opts *o, struct tlm_error *err) { (void)o; tlm_error_set(err, TLM_EINVAL, "--join: not yet"); return NULL; }
void join_setup(struct join *j, struct stage_ops *ops) { (void)j; (void)ops; }
int join_event(struct join *j, struct stage *st, const struct stage_event *ev, struct tlm_error *err) { (void)j; (void)st; (void)ev; (void)err; return 0; }
int join_watermark(struct join *j, struct stage *st, tlm_time_t wm, struct tlm_error *err) { (void)j; (void)st; (void)wm; (void)err; return 0; }
int join_end(struct join *j, struct stage *st, struct tlm_error *err) { (void)j; (void)st; (void)err; return 0; }
int join_flush(struct join *j) { (void)j; return 0; }
int join_save(struct join *j, struct tlm_snap_writer *w, struct tlm_error *err) { (void)j; (void)w; (void)err; return 0; }
int join_load(struct join *j, json_t *rec, struct tlm_error *err) { (void)j; (void)rec; (void)err; return 0; }
void join_stats(struct join *j, json_t *o) { (void)j; (void)o; }
int join_destroy(struct join *j, struct tlm_error *err) { (void)err; free(j); return 0; }
