/*
 * topk_merge.h: exact merge of top-k lists computed over disjoint shards of one gallery, for
 * `mpirun -np N simtune topk` (each rank searches its shard, rank 0 merges; docs/scaling.md).
 *
 * Every part is an st_topk_result (infer/topk.h) of the same Q and k over its shard, with its
 * indices already gallery rows of the whole gallery (the shard's first row added). The merged
 * list of a query holds its k best candidates of all parts in the order of kernels/math/topk.h
 * (larger key first, equal keys to the lower gallery row, empty slots last), which is the
 * list one search over the whole gallery returns: the global top-k is inside the union of the
 * shards' top-k, and keys, scores and the order are per candidate, not per shard.
 * Callers: cmd/topk.c.
 */
#ifndef ST_TOPK_MERGE_H
#define ST_TOPK_MERGE_H

#include "topk.h"

/* out (allocated here; st_topk_result_free) = the merge of parts[0 .. n_parts). */
void st_topk_merge(const st_topk_result *parts, int n_parts, st_topk_result *out);

#endif
