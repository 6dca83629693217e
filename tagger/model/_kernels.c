/* Compiled loops of the sparse serving path (tagger/model/sparse.py).
 *
 * score() does per clause what SparseModel._score and _Trees.scores do with numpy: the
 * linear members as a gather-and-sum over the clause's non-zero columns, and the tree
 * members by QuickScorer bit masks; ngrams() does what _Block.entries does, a binary
 * search per n-gram instead of numpy temporaries per n. numpy pays ~20 ns of scattered
 * bookkeeping per failed tree test and allocates a temporary per step; here a clause's
 * 1,920 masks stay in L1 and a failed test is one AND. contrib() is evidence: the same
 * pass, kept per feature for the labels asked for. The numpy code stays as the
 * fallback where this module is not built, and a test holds the two equal.
 *
 * Arrays come in through the buffer protocol (no numpy headers at build time); sparse.py
 * passes them contiguous and of the dtypes checked below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int get(PyObject *obj, Py_buffer *view, const char *name, Py_ssize_t itemsize, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: item size %zd, expected %zd", name, view->itemsize, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static inline int lowest_bit(uint32_t m) {
    return m ? __builtin_ctz(m) : 32;
}

/* score(r, c, v, W, b, first, thr, node_tree, node_mask, start, leaf_values, slot,
 *       logits_out, trees_out)
 *
 * r, c (int64, n): row and column of each non-zero entry, rows ascending.
 * v (float32, n): the entry's value (> 0).
 * W (float32, n_features x L), b (float32, L): the linear members.
 * first (int64, n_features + 1): a column's tree tests are first[c]..first[c+1]-1,
 *   sorted by threshold; thr (float32), node_tree (int64), node_mask (uint32) per test.
 * start (uint32, T): each tree's leaf mask for an all-zero clause.
 * leaf_values (float32, T x max_leaves), slot (int64, T): tree -> output column.
 * logits_out (float32, B x L), trees_out (float32, B x S): written, zeroed here.
 */
static PyObject *score(PyObject *self, PyObject *args) {
    PyObject *o[14];
    if (!PyArg_UnpackTuple(args, "score", 14, 14, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                           &o[9], &o[10], &o[11], &o[12], &o[13]))
        return NULL;
    static const char *names[14] = {"r", "c", "v", "W", "b", "first", "thr", "node_tree", "node_mask", "start",
                                    "leaf_values", "slot", "logits_out", "trees_out"};
    static const Py_ssize_t sizes[14] = {8, 8, 4, 4, 4, 8, 4, 8, 4, 4, 4, 8, 4, 4};
    Py_buffer bv[14];
    int got = 0;
    for (; got < 14; got++) {
        if (get(o[got], &bv[got], names[got], sizes[got], got >= 12) < 0)
            goto fail;
    }
    {
        const int64_t *r = bv[0].buf, *c = bv[1].buf;
        const float *v = bv[2].buf, *W = bv[3].buf, *b = bv[4].buf;
        const int64_t *first = bv[5].buf;
        const float *thr = bv[6].buf;
        const int64_t *node_tree = bv[7].buf;
        const uint32_t *node_mask = bv[8].buf, *start = bv[9].buf;
        const float *leaf_values = bv[10].buf;
        const int64_t *slot = bv[11].buf;
        float *logits = bv[12].buf, *tout = bv[13].buf;
        Py_ssize_t n = bv[0].len / 8, L = bv[4].len / 4, T = bv[9].len / 4;
        Py_ssize_t n_features = bv[5].len / 8 - 1;
        Py_ssize_t B = L ? bv[12].len / 4 / L : 0;
        Py_ssize_t S = B ? bv[13].len / 4 / B : 0;
        Py_ssize_t max_leaves = T ? bv[10].len / 4 / T : 0;
        if (bv[1].len / 8 != n || bv[2].len / 4 != n || bv[3].len / 4 != n_features * L || bv[7].len / 8 != bv[6].len / 4 ||
            bv[8].len / 4 != bv[6].len / 4 || bv[11].len / 8 != T || bv[12].len / 4 != B * L || bv[13].len / 4 != B * S) {
            PyErr_SetString(PyExc_ValueError, "score: array shapes do not agree");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (r[i] < 0 || r[i] >= B || (i && r[i] < r[i - 1]) || c[i] < 0 || c[i] >= n_features) {
                PyErr_SetString(PyExc_ValueError, "score: entries must have rows ascending in [0, B) and columns in range");
                goto fail;
            }
        }
        for (Py_ssize_t t = 0; t < T; t++) {
            if (slot[t] < 0 || slot[t] >= S) {
                PyErr_SetString(PyExc_ValueError, "score: tree slot out of range");
                goto fail;
            }
        }
        uint32_t *masks = PyMem_Malloc((T ? T : 1) * sizeof(uint32_t));
        if (!masks) {
            PyErr_NoMemory();
            goto fail;
        }
        Py_BEGIN_ALLOW_THREADS
        memset(logits, 0, B * L * sizeof(float));
        memset(tout, 0, B * S * sizeof(float));
        Py_ssize_t i = 0;
        for (Py_ssize_t row = 0; row < B; row++) {
            float *lg = logits + row * L;
            memcpy(masks, start, T * sizeof(uint32_t));
            for (; i < n && r[i] == row; i++) {
                const float x = v[i];
                const float *w = W + c[i] * L;
                for (Py_ssize_t j = 0; j < L; j++)
                    lg[j] += x * w[j];
                /* Tests x <= t fail for t < x: a prefix of the column's tests. */
                for (int64_t k = first[c[i]], end = first[c[i] + 1]; k < end && thr[k] < x; k++)
                    masks[node_tree[k]] &= node_mask[k];
            }
            for (Py_ssize_t j = 0; j < L; j++)
                lg[j] += b[j];
            float *to = tout + row * S;
            for (Py_ssize_t t = 0; t < T; t++) {
                int leaf = lowest_bit(masks[t]);
                if (leaf >= max_leaves)
                    leaf = (int)max_leaves - 1; /* unreachable for a well-formed bundle */
                to[slot[t]] += leaf_values[t * max_leaves + leaf];
            }
        }
        Py_END_ALLOW_THREADS
        PyMem_Free(masks);
    }
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&bv[k]);
    Py_RETURN_NONE;
fail:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&bv[k]);
    return NULL;
}

/* Column of code in an open-addressing table (keys, vals; size a power of two, empty
 * slots hold -1), or -1. The table is built by tagger/model/sparse.py with the same hash. */
static inline int64_t lookup(const int64_t *keys, const int64_t *vals, uint64_t mask, int shift, int64_t code) {
    uint64_t h = ((uint64_t)code * 0x9E3779B97F4A7C15ULL) >> shift;
    for (;;) {
        int64_t k = keys[h];
        if (k == code)
            return vals[h];
        if (k < 0)
            return -1;
        h = (h + 1) & mask;
    }
}

#define MAX_N 8

/* ngrams(ids, V, tables, rows_out, cols_out[, pos_out, len_out]) -> count
 *
 * ids (int64): the batch's unigram ids, -1 unknown, -2 the separator between clauses.
 * tables: a sequence of (n, keys, cols): the n-grams of the vocabulary as int64 codes
 *   (base-V digits of their unigram ids, first unigram most significant, >= 0) in an
 *   open-addressing hash table of power-of-two size with -1 for empty slots, and the
 *   column of each (int64) at the same position. A table must have an empty slot.
 * Writes (row, column) of every in-vocabulary n-gram occurrence; an n-gram never spans
 * an unknown unigram or a separator. rows_out and cols_out (int64) need room for
 * len(ids) x len(tables) entries; so do pos_out and len_out (int64, optional: evidence
 * maps an occurrence back to the text by its first unigram's index in ids and its n).
 */
static PyObject *ngrams(PyObject *self, PyObject *args) {
    PyObject *ids_o, *tables_o, *rows_o, *cols_o, *pos_o = NULL, *len_o = NULL;
    long long V;
    if (!PyArg_ParseTuple(args, "OLOOO|OO", &ids_o, &V, &tables_o, &rows_o, &cols_o, &pos_o, &len_o))
        return NULL;
    if ((pos_o == NULL) != (len_o == NULL)) {
        PyErr_SetString(PyExc_TypeError, "ngrams: pos_out and len_out go together");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(tables_o, "ngrams: tables must be a sequence");
    if (!seq)
        return NULL;
    Py_ssize_t nt = PySequence_Fast_GET_SIZE(seq);
    if (nt > MAX_N) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "ngrams: too many tables");
        return NULL;
    }
    Py_buffer ids_b, rows_b, cols_b, pos_b, len_b, codes_b[MAX_N], tcols_b[MAX_N];
    int order[MAX_N];
    int have_ids = 0, have_rows = 0, have_cols = 0, have_pos = 0, have_len = 0, nb = 0;
    PyObject *result = NULL;
    if (get(ids_o, &ids_b, "ids", 8, 0) < 0)
        goto done;
    have_ids = 1;
    if (get(rows_o, &rows_b, "rows_out", 8, 1) < 0)
        goto done;
    have_rows = 1;
    if (get(cols_o, &cols_b, "cols_out", 8, 1) < 0)
        goto done;
    have_cols = 1;
    if (pos_o) {
        if (get(pos_o, &pos_b, "pos_out", 8, 1) < 0)
            goto done;
        have_pos = 1;
        if (get(len_o, &len_b, "len_out", 8, 1) < 0)
            goto done;
        have_len = 1;
    }
    for (; nb < nt; nb++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, nb);
        PyObject *codes_o, *tc_o;
        if (!PyArg_ParseTuple(item, "iOO", &order[nb], &codes_o, &tc_o))
            goto done;
        if (order[nb] < 1 || order[nb] > MAX_N) {
            PyErr_SetString(PyExc_ValueError, "ngrams: n out of range");
            goto done;
        }
        if (get(codes_o, &codes_b[nb], "codes", 8, 0) < 0)
            goto done;
        if (get(tc_o, &tcols_b[nb], "cols", 8, 0) < 0) {
            PyBuffer_Release(&codes_b[nb]);
            goto done;
        }
        Py_ssize_t size = codes_b[nb].len / 8;
        if (codes_b[nb].len != tcols_b[nb].len || size < 2 || (size & (size - 1))) {
            PyErr_SetString(PyExc_ValueError, "ngrams: a table's keys and cols must have one power-of-two length");
            PyBuffer_Release(&codes_b[nb]);
            PyBuffer_Release(&tcols_b[nb]);
            goto done;
        }
    }
    {
        const int64_t *ids = ids_b.buf;
        int64_t *rows = rows_b.buf, *cols = cols_b.buf;
        int64_t *pos = have_pos ? pos_b.buf : NULL, *lens = have_len ? len_b.buf : NULL;
        Py_ssize_t n = ids_b.len / 8, cap = rows_b.len / 8;
        if (cols_b.len / 8 < cap)
            cap = cols_b.len / 8;
        if (have_pos && pos_b.len / 8 < cap)
            cap = pos_b.len / 8;
        if (have_len && len_b.len / 8 < cap)
            cap = len_b.len / 8;
        if (cap < n * nt) {
            PyErr_SetString(PyExc_ValueError, "ngrams: output arrays too small");
            goto done;
        }
        Py_ssize_t k = 0;
        int64_t row = 0;
        uint64_t masks[MAX_N];
        int shifts[MAX_N];
        for (int t = 0; t < nb; t++) {
            uint64_t size = (uint64_t)(codes_b[t].len / 8);
            masks[t] = size - 1;
            shifts[t] = 64 - __builtin_ctzll(size);
        }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            if (ids[i] == -2) {
                row++;
                continue;
            }
            for (int t = 0; t < nb; t++) {
                int len = order[t];
                if (i + len > n)
                    continue;
                /* Unsigned: wraps like numpy's int64 arithmetic in the fallback, never UB. */
                uint64_t code = 0;
                int ok = 1;
                for (int j = 0; j < len; j++) {
                    int64_t u = ids[i + j];
                    if (u < 0) {
                        ok = 0;
                        break;
                    }
                    code = code * (uint64_t)V + (uint64_t)u;
                }
                if (!ok)
                    continue;
                int64_t col = lookup(codes_b[t].buf, tcols_b[t].buf, masks[t], shifts[t], (int64_t)code);
                if (col >= 0) {
                    rows[k] = row;
                    cols[k] = col;
                    if (pos) {
                        pos[k] = i;
                        lens[k] = len;
                    }
                    k++;
                }
            }
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(k);
    }
done:
    for (int t = 0; t < nb; t++) {
        PyBuffer_Release(&codes_b[t]);
        PyBuffer_Release(&tcols_b[t]);
    }
    if (have_ids)
        PyBuffer_Release(&ids_b);
    if (have_rows)
        PyBuffer_Release(&rows_b);
    if (have_cols)
        PyBuffer_Release(&cols_b);
    if (have_pos)
        PyBuffer_Release(&pos_b);
    if (have_len)
        PyBuffer_Release(&len_b);
    Py_DECREF(seq);
    return result;
}

/* contrib(row_ptr, c, v, W, first, thr, node_tree, node_mask, start, slot, node_lo, node_hi,
 *         node_delta, req_row, req_lin, req_slot, req_off, lin_out, tree_out)
 *
 * Evidence (tagger/model/sparse.py, SparseModel.explain): what each non-zero feature of a
 * clause adds to one label's linear logit and to its trees' raw score.
 * row_ptr (int64, B + 1): row i's entries are row_ptr[i]..row_ptr[i+1]-1 of c, v (as in score).
 * W, first, thr, node_tree, node_mask, start, slot: as in score.
 * node_lo, node_hi (int32), node_delta (float32), per test: the test's credit when it fails
 *   and the exit leaf is in [lo, hi) (_Trees.path_tables).
 * req_row, req_lin, req_slot, req_off (int64, R): a request is one label of one row: its
 *   linear column (-1: none), its tree slot (-1: none), where its row's entries go in the
 *   outputs; requests of one row should be adjacent (the row's leaves are computed once).
 * lin_out, tree_out (float32): per request, one value per entry of its row.
 */
static PyObject *contrib(PyObject *self, PyObject *args) {
    enum { NA = 19 };
    PyObject *o[NA];
    if (!PyArg_UnpackTuple(args, "contrib", NA, NA, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9],
                           &o[10], &o[11], &o[12], &o[13], &o[14], &o[15], &o[16], &o[17], &o[18]))
        return NULL;
    static const char *names[NA] = {"row_ptr", "c", "v", "W", "first", "thr", "node_tree", "node_mask", "start", "slot",
                                    "node_lo", "node_hi", "node_delta", "req_row", "req_lin", "req_slot", "req_off",
                                    "lin_out", "tree_out"};
    static const Py_ssize_t sizes[NA] = {8, 8, 4, 4, 8, 4, 8, 4, 4, 8, 4, 4, 4, 8, 8, 8, 8, 4, 4};
    Py_buffer bv[NA];
    int got = 0;
    for (; got < NA; got++) {
        if (get(o[got], &bv[got], names[got], sizes[got], got >= 17) < 0)
            goto fail;
    }
    {
        const int64_t *row_ptr = bv[0].buf, *c = bv[1].buf;
        const float *v = bv[2].buf, *W = bv[3].buf;
        const int64_t *first = bv[4].buf;
        const float *thr = bv[5].buf;
        const int64_t *node_tree = bv[6].buf;
        const uint32_t *node_mask = bv[7].buf, *start = bv[8].buf;
        const int64_t *slot = bv[9].buf;
        const int32_t *lo = bv[10].buf, *hi = bv[11].buf;
        const float *delta = bv[12].buf;
        const int64_t *req_row = bv[13].buf, *req_lin = bv[14].buf, *req_slot = bv[15].buf, *req_off = bv[16].buf;
        float *lin_out = bv[17].buf, *tree_out = bv[18].buf;
        Py_ssize_t B = bv[0].len / 8 - 1, n = bv[1].len / 8, n_features = bv[4].len / 8 - 1;
        Py_ssize_t n_nodes = bv[5].len / 4, T = bv[8].len / 4, R = bv[13].len / 8, out_n = bv[17].len / 4;
        Py_ssize_t L = n_features > 0 ? bv[3].len / 4 / n_features : 0;
        if (B < 0 || bv[2].len / 4 != n || bv[3].len / 4 != n_features * L || bv[6].len / 8 != n_nodes ||
            bv[7].len / 4 != n_nodes || bv[9].len / 8 != T || bv[10].len / 4 != n_nodes || bv[11].len / 4 != n_nodes ||
            bv[12].len / 4 != n_nodes || bv[14].len / 8 != R || bv[15].len / 8 != R || bv[16].len / 8 != R ||
            bv[18].len / 4 != out_n) {
            PyErr_SetString(PyExc_ValueError, "contrib: array shapes do not agree");
            goto fail;
        }
        if (row_ptr[0] != 0 || row_ptr[B] != n) {
            PyErr_SetString(PyExc_ValueError, "contrib: row_ptr must run from 0 to the number of entries");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < B; i++) {
            if (row_ptr[i + 1] < row_ptr[i]) {
                PyErr_SetString(PyExc_ValueError, "contrib: row_ptr must not decrease");
                goto fail;
            }
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (c[i] < 0 || c[i] >= n_features) {
                PyErr_SetString(PyExc_ValueError, "contrib: column out of range");
                goto fail;
            }
        }
        for (Py_ssize_t i = 0; i <= n_features; i++) {
            if (first[i] < 0 || first[i] > n_nodes || (i && first[i] < first[i - 1])) {
                PyErr_SetString(PyExc_ValueError, "contrib: first must rise within the tests");
                goto fail;
            }
        }
        for (Py_ssize_t k = 0; k < n_nodes; k++) {
            if (node_tree[k] < 0 || node_tree[k] >= T) {
                PyErr_SetString(PyExc_ValueError, "contrib: test of no tree");
                goto fail;
            }
        }
        for (Py_ssize_t q = 0; q < R; q++) {
            Py_ssize_t row = req_row[q];
            if (row < 0 || row >= B || req_lin[q] < -1 || req_lin[q] >= L || req_slot[q] < -1 || req_off[q] < 0 ||
                req_off[q] + (row_ptr[row + 1] - row_ptr[row]) > out_n) {
                PyErr_SetString(PyExc_ValueError, "contrib: request out of range");
                goto fail;
            }
        }
        uint32_t *masks = PyMem_Malloc((T ? T : 1) * sizeof(uint32_t));
        int32_t *leaf = PyMem_Malloc((T ? T : 1) * sizeof(int32_t));
        if (!masks || !leaf) {
            PyMem_Free(masks);
            PyMem_Free(leaf);
            PyErr_NoMemory();
            goto fail;
        }
        Py_BEGIN_ALLOW_THREADS
        Py_ssize_t have = -1; /* the row whose exit leaves are in leaf[] */
        for (Py_ssize_t q = 0; q < R; q++) {
            const Py_ssize_t row = req_row[q], a = row_ptr[row], b = row_ptr[row + 1];
            const int64_t lin = req_lin[q], want = req_slot[q];
            float *lo_out = lin_out + req_off[q], *to_out = tree_out + req_off[q];
            if (want >= 0 && have != row) {
                memcpy(masks, start, T * sizeof(uint32_t));
                for (Py_ssize_t i = a; i < b; i++)
                    for (int64_t k = first[c[i]], end = first[c[i] + 1]; k < end && thr[k] < v[i]; k++)
                        masks[node_tree[k]] &= node_mask[k];
                for (Py_ssize_t t = 0; t < T; t++)
                    leaf[t] = lowest_bit(masks[t]);
                have = row;
            }
            for (Py_ssize_t i = a; i < b; i++) {
                lo_out[i - a] = lin >= 0 ? v[i] * W[c[i] * L + lin] : 0.0f;
                float acc = 0.0f;
                if (want >= 0) {
                    /* The same failed tests as above; those of the wanted slot on the path count. */
                    for (int64_t k = first[c[i]], end = first[c[i] + 1]; k < end && thr[k] < v[i]; k++) {
                        const int64_t t = node_tree[k];
                        if (slot[t] == want && lo[k] <= leaf[t] && leaf[t] < hi[k])
                            acc += delta[k];
                    }
                }
                to_out[i - a] = acc;
            }
        }
        Py_END_ALLOW_THREADS
        PyMem_Free(masks);
        PyMem_Free(leaf);
    }
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&bv[k]);
    Py_RETURN_NONE;
fail:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&bv[k]);
    return NULL;
}

/* tokens(occ_ptr, occ_entry, occ_start, occ_end, per_entry, tok_of, marks, row_ptr, row_tok,
 *        req_row, req_off, tok_off, combined, out)
 *
 * Evidence, from features to tokens (SparseModel._to_tokens is the numpy reference): for each
 * request (one label of one row), each occurrence of a feature of its row gives the
 * feature's contribution / (its number of occurrences) to the tokens under it, shared evenly
 * by the occurrence's characters that belong to a token; an occurrence holding a marker
 * character gives nothing.
 * occ_ptr (int64, B + 1): row i's occurrences are occ_ptr[i]..occ_ptr[i+1]-1 of
 *   occ_entry (int64: the feature's index among the chunk's entries), occ_start, occ_end
 *   (int64: characters [start, end) of the chunk's joined token strings).
 * per_entry (int64): occurrences of each entry. tok_of (int64, characters): the global token
 *   of each character, -1 for a space or separator. marks (int64, characters + 1): prefix
 *   counts of marker characters. row_ptr, row_tok (int64, B + 1): each row's first entry, token.
 * req_row, req_off (entries), tok_off (tokens) (int64, R); combined (float64): per request
 *   and entry of its row, the contribution; out (float64): per request, per token of its row.
 */
static PyObject *tokens(PyObject *self, PyObject *args) {
    enum { NA = 14 };
    PyObject *o[NA];
    if (!PyArg_UnpackTuple(args, "tokens", NA, NA, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9],
                           &o[10], &o[11], &o[12], &o[13]))
        return NULL;
    static const char *names[NA] = {"occ_ptr", "occ_entry", "occ_start", "occ_end", "per_entry", "tok_of", "marks",
                                    "row_ptr", "row_tok", "req_row", "req_off", "tok_off", "combined", "out"};
    static const Py_ssize_t sizes[NA] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
    Py_buffer bv[NA];
    int got = 0;
    for (; got < NA; got++) {
        if (get(o[got], &bv[got], names[got], sizes[got], got == NA - 1) < 0)
            goto fail;
    }
    {
        const int64_t *occ_ptr = bv[0].buf, *occ_entry = bv[1].buf, *occ_start = bv[2].buf, *occ_end = bv[3].buf;
        const int64_t *per_entry = bv[4].buf, *tok_of = bv[5].buf, *marks = bv[6].buf, *row_ptr = bv[7].buf;
        const int64_t *row_tok = bv[8].buf, *req_row = bv[9].buf, *req_off = bv[10].buf, *tok_off = bv[11].buf;
        const double *combined = bv[12].buf;
        double *out = bv[13].buf;
        Py_ssize_t B = bv[0].len / 8 - 1, n_occ = bv[1].len / 8, n_entries = bv[4].len / 8, n_chars = bv[5].len / 8;
        Py_ssize_t R = bv[9].len / 8, n_comb = bv[12].len / 8, n_out = bv[13].len / 8;
        if (B < 0 || bv[2].len / 8 != n_occ || bv[3].len / 8 != n_occ || bv[6].len / 8 != n_chars + 1 || bv[7].len / 8 != B + 1 ||
            bv[8].len / 8 != B + 1 || bv[10].len / 8 != R || bv[11].len / 8 != R || occ_ptr[0] != 0 || occ_ptr[B] != n_occ ||
            row_ptr[0] != 0 || row_ptr[B] != n_entries || row_tok[0] != 0) {
            PyErr_SetString(PyExc_ValueError, "tokens: array shapes do not agree");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < B; i++) {
            if (occ_ptr[i + 1] < occ_ptr[i] || row_ptr[i + 1] < row_ptr[i] || row_tok[i + 1] < row_tok[i]) {
                PyErr_SetString(PyExc_ValueError, "tokens: row pointers must not decrease");
                goto fail;
            }
        }
        for (Py_ssize_t k = 0; k < n_occ; k++) {
            if (occ_entry[k] < 0 || occ_entry[k] >= n_entries || occ_start[k] < 0 || occ_end[k] < occ_start[k] || occ_end[k] > n_chars ||
                per_entry[occ_entry[k]] < 1) {
                PyErr_SetString(PyExc_ValueError, "tokens: occurrence out of range");
                goto fail;
            }
        }
        for (Py_ssize_t c = 0; c < n_chars; c++) {
            if (tok_of[c] < -1 || tok_of[c] >= row_tok[B]) {
                PyErr_SetString(PyExc_ValueError, "tokens: token out of range");
                goto fail;
            }
        }
        for (Py_ssize_t q = 0; q < R; q++) {
            Py_ssize_t row = req_row[q];
            if (row < 0 || row >= B || req_off[q] < 0 || req_off[q] + (row_ptr[row + 1] - row_ptr[row]) > n_comb || tok_off[q] < 0 ||
                tok_off[q] + (row_tok[row + 1] - row_tok[row]) > n_out) {
                PyErr_SetString(PyExc_ValueError, "tokens: request out of range");
                goto fail;
            }
        }
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t q = 0; q < R; q++) {
            const Py_ssize_t row = req_row[q];
            double *o_row = out + tok_off[q];
            const double *c_row = combined + req_off[q];
            memset(o_row, 0, (row_tok[row + 1] - row_tok[row]) * sizeof(double));
            for (Py_ssize_t k = occ_ptr[row]; k < occ_ptr[row + 1]; k++) {
                const int64_t a = occ_start[k], b = occ_end[k];
                /* A character of this row's token string belongs to one of its tokens or none. */
                if (marks[b] != marks[a] || occ_entry[k] < row_ptr[row] || occ_entry[k] >= row_ptr[row + 1])
                    continue;
                const double val = c_row[occ_entry[k] - row_ptr[row]];
                if (val == 0.0)
                    continue;
                int cnt = 0;
                for (int64_t ch = a; ch < b; ch++)
                    cnt += tok_of[ch] >= 0;
                if (!cnt)
                    continue;
                const double share = val / ((double)cnt * (double)per_entry[occ_entry[k]]);
                for (int64_t ch = a; ch < b; ch++) {
                    const int64_t t = tok_of[ch] - row_tok[row];
                    if (tok_of[ch] >= 0 && t >= 0 && t < row_tok[row + 1] - row_tok[row])
                        o_row[t] += share;
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&bv[k]);
    Py_RETURN_NONE;
fail:
    for (int k = 0; k < got; k++)
        PyBuffer_Release(&bv[k]);
    return NULL;
}

/* count(r, c, B, n_features, rows_out, cols_out, counts_out) -> k
 *
 * What np.unique(r * n_features + c, return_counts=True) gives SparseModel._extract, in
 * O(n): the distinct (row, column) pairs of the entries (r, c: int64, n; rows in [0, B) in
 * any order, columns in [0, n_features)), sorted by row then column, and how often each
 * occurs. Entries are bucketed by row (a counting sort), then each row's columns are
 * counted in a scratch array and read back in column order from a bitmap of the columns
 * seen. rows_out, cols_out, counts_out (int64) need room for n.
 */
static PyObject *count(PyObject *self, PyObject *args) {
    PyObject *o[5];
    long long B_ll, nf_ll;
    if (!PyArg_ParseTuple(args, "OOLLOOO", &o[0], &o[1], &B_ll, &nf_ll, &o[2], &o[3], &o[4]))
        return NULL;
    static const char *names[5] = {"r", "c", "rows_out", "cols_out", "counts_out"};
    Py_buffer bv[5];
    int got = 0;
    PyObject *result = NULL;
    for (; got < 5; got++) {
        if (get(o[got], &bv[got], names[got], 8, got >= 2) < 0)
            goto done;
    }
    {
        const int64_t *r = bv[0].buf, *c = bv[1].buf;
        int64_t *rows_out = bv[2].buf, *cols_out = bv[3].buf, *counts_out = bv[4].buf;
        const Py_ssize_t n = bv[0].len / 8, B = (Py_ssize_t)B_ll, nf = (Py_ssize_t)nf_ll;
        if (bv[1].len / 8 != n || bv[2].len / 8 < n || bv[3].len / 8 < n || bv[4].len / 8 < n || B < 0 || nf < 0) {
            PyErr_SetString(PyExc_ValueError, "count: array shapes do not agree");
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (r[i] < 0 || r[i] >= B || c[i] < 0 || c[i] >= nf) {
                PyErr_SetString(PyExc_ValueError, "count: row or column out of range");
                goto done;
            }
        }
        const Py_ssize_t words = (nf + 63) / 64;
        Py_ssize_t *start = PyMem_Calloc(B + 1, sizeof(Py_ssize_t));
        int64_t *by_row = PyMem_Malloc((n ? n : 1) * sizeof(int64_t));
        uint32_t *cnt = PyMem_Calloc(nf ? nf : 1, sizeof(uint32_t));
        uint64_t *bits = PyMem_Calloc(words ? words : 1, sizeof(uint64_t));
        if (!start || !by_row || !cnt || !bits) {
            PyMem_Free(start);
            PyMem_Free(by_row);
            PyMem_Free(cnt);
            PyMem_Free(bits);
            PyErr_NoMemory();
            goto done;
        }
        Py_ssize_t k = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++)
            start[r[i] + 1]++;
        for (Py_ssize_t b = 0; b < B; b++)
            start[b + 1] += start[b];
        for (Py_ssize_t i = 0; i < n; i++)
            by_row[start[r[i]]++] = c[i]; /* start[b] ends as row b's end */
        Py_ssize_t a = 0;
        for (Py_ssize_t b = 0; b < B; b++) {
            const Py_ssize_t e = start[b];
            if (e == a)
                continue;
            Py_ssize_t lo = words, hi = -1;
            for (Py_ssize_t i = a; i < e; i++) {
                const int64_t col = by_row[i];
                const Py_ssize_t w = col >> 6;
                cnt[col]++;
                bits[w] |= 1ULL << (col & 63);
                if (w < lo)
                    lo = w;
                if (w > hi)
                    hi = w;
            }
            for (Py_ssize_t w = lo; w <= hi; w++) {
                uint64_t m = bits[w];
                while (m) {
                    const int64_t col = (int64_t)w * 64 + __builtin_ctzll(m);
                    rows_out[k] = b;
                    cols_out[k] = col;
                    counts_out[k] = cnt[col];
                    cnt[col] = 0;
                    k++;
                    m &= m - 1;
                }
                bits[w] = 0;
            }
            a = e;
        }
        Py_END_ALLOW_THREADS
        PyMem_Free(start);
        PyMem_Free(by_row);
        PyMem_Free(cnt);
        PyMem_Free(bits);
        result = PyLong_FromSsize_t(k);
    }
done:
    for (int j = 0; j < got; j++)
        PyBuffer_Release(&bv[j]);
    return result;
}

static PyMethodDef methods[] = {
    {"score", score, METH_VARARGS, "Linear logits and tree scores of a batch of sparse rows (see tagger/model/sparse.py)."},
    {"ngrams", ngrams, METH_VARARGS, "(row, column) of every in-vocabulary n-gram of a batch of unigram ids (see tagger/model/sparse.py)."},
    {"contrib", contrib, METH_VARARGS, "Per-feature contributions to wanted labels' logits, for evidence (see tagger/model/sparse.py)."},
    {"count", count, METH_VARARGS, "Distinct (row, column) pairs of sparse entries with their counts, sorted (see tagger/model/sparse.py)."},
    {"tokens", tokens, METH_VARARGS, "Evidence: feature contributions shared out to the tokens under their occurrences (see tagger/model/sparse.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "tagger.model._kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    return PyModule_Create(&module);
}
