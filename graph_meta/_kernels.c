/* Compiled inner loop of the live re-scoring path (graph_meta/live_kernels.py loads it with
 * ctypes; the module init below only makes the file importable as graph_meta._kernels).
 *
 * neighbour_sums: for the training ratings of the item columns `cols` (item-major CSC:
 * col_ptr, users, ratings), recompute the residual of every rating flagged dirty under the
 * current user states theta [N_U, D] and item states items [N_I, D],
 *     e = r - (mu + h0 + (1 + h1) (theta_u0 + x_i0 + <theta_u[1:], x_i[1:]>)),
 * clear its flag, and, for every rating no observed one replaced, accumulate per user
 *     num[u] += w_sim[i] e,   den[u] += w_sim[i],   learned[u] += w_reg[i] e.
 * live_sums does the same over observed ratings. The numpy path
 * (graph_meta.live_cache.EdgeResiduals.gather and three bincounts) computes the same sums;
 * tests hold them equal. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#if defined(_WIN32)
#define GM_EXPORT __declspec(dllexport)
#else
#define GM_EXPORT __attribute__((visibility("default")))
#endif

GM_EXPORT void neighbour_sums(
    const int64_t *cols, int64_t n_cols, const int64_t *col_ptr, const int64_t *users,
    const double *ratings, double *residual, uint8_t *dirty, const uint8_t *replaced,
    const double *theta, const double *items, int64_t d, double mu, double h0, double h1,
    const double *w_sim, const double *w_reg, double *num, double *den, double *learned)
{
    const double scale = 1.0 + h1;
    for (int64_t c = 0; c < n_cols; ++c) {
        const int64_t item = cols[c];
        const double *x = items + item * d;
        const double ws = w_sim[item], wr = w_reg[item];
        for (int64_t k = col_ptr[item]; k < col_ptr[item + 1]; ++k) {
            const int64_t u = users[k];
            if (dirty[k]) {
                const double *t = theta + u * d;
                double dot = t[0] + x[0];
                for (int64_t j = 1; j < d; ++j)
                    dot += t[j] * x[j];
                residual[k] = ratings[k] - (mu + h0 + scale * dot);
                dirty[k] = 0;
            }
            if (replaced[k])
                continue;
            const double e = residual[k];
            num[u] += ws * e;
            den[u] += ws;
            learned[u] += wr * e;
        }
    }
}

/* live_sums: the same sums over observed ratings (edge ids `ids` on items `hit`), whose
 * residual is recomputed when its user's or item's state version moved since (stamps). */
GM_EXPORT void live_sums(
    const int64_t *ids, const int64_t *hit, int64_t n_ids, const int64_t *live_user,
    const double *live_rating, double *live_residual, int64_t *user_stamp,
    int64_t *item_stamp, const int64_t *user_version, const int64_t *item_version,
    const double *theta, const double *items, int64_t d, double mu, double h0, double h1,
    const double *w_sim, const double *w_reg, double *num, double *den, double *learned)
{
    const double scale = 1.0 + h1;
    for (int64_t k = 0; k < n_ids; ++k) {
        const int64_t id = ids[k], item = hit[k], u = live_user[id];
        if (user_stamp[id] != user_version[u] || item_stamp[id] != item_version[item]) {
            const double *t = theta + u * d, *x = items + item * d;
            double dot = t[0] + x[0];
            for (int64_t j = 1; j < d; ++j)
                dot += t[j] * x[j];
            live_residual[id] = live_rating[id] - (mu + h0 + scale * dot);
            user_stamp[id] = user_version[u];
            item_stamp[id] = item_version[item];
        }
        const double e = live_residual[id];
        num[u] += w_sim[item] * e;
        den[u] += w_sim[item];
        learned[u] += w_reg[item] * e;
    }
}

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "Compiled live re-scoring loop, loaded with ctypes by graph_meta.live_kernels.", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
