/* llama_logits: runs a GGUF model with llama.cpp (libllama) over a token-id file in the windows
 * `moekit eval --ppl-ids IDS --ctx C --stride C` uses, and stores its distributions in moekit's
 * stored-logits format (include/moekit/eval.h), so that
 *     moekit eval -m MODEL.gguf --ppl-ids IDS --ctx C --stride C --kld-logits OUT --json
 * reports moekit's mean KL divergence from llama.cpp and their top-1 agreement, position by position.
 * A development tool built by bench/agree_llama.sh against a llama.cpp build (LLAMA_CPP_DIR) and
 * libmoekit.a; not part of moekit.
 *     llama_logits MODEL.gguf IDS CTX TOP_K OUT   (prints llama.cpp's perplexity on stdout)
 * With TEXT=FILE set (the text IDS was made from), llama.cpp also tokenizes FILE itself, and the JSON
 * line says whether its ids equal IDS (a leading BOS that only one side adds is ignored) and where the
 * first difference is. */
#include "base/base.h"
#include "eval/eval_internal.h"
#include "moekit/eval.h"

#include <llama.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: llama_logits MODEL.gguf IDS CTX TOP_K OUT\n");
        return 2;
    }
    const size_t ctx = (size_t)atol(argv[3]);
    const uint32_t top_k = (uint32_t)atol(argv[4]);
    int32_t *ids = NULL;
    size_t n = 0;
    if (mk_read_ids_file(argv[2], &ids, &n)) {
        fprintf(stderr, "llama_logits: %s\n", mk_last_error());
        return 1;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "llama_logits: %s: llama.cpp could not load it\n", argv[1]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)ctx;
    cp.n_batch = (uint32_t)ctx;
    cp.n_ubatch = (uint32_t)ctx;
    const char *th = getenv("THREADS");
    cp.n_threads = cp.n_threads_batch = th ? atoi(th) : 2;
    if (getenv("KV_F32")) { /* llama.cpp's KV cache is f16 by default; moekit keeps f32 */
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
    }
    struct llama_context *lc = llama_init_from_model(model, cp);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t V = llama_vocab_n_tokens(vocab);
    if (V <= 0 && getenv("VOCAB")) V = atoi(getenv("VOCAB")); /* a GGUF without tokenizer metadata */
    if (!lc || V <= 0) {
        fprintf(stderr, "llama_logits: %s: no context or no vocabulary size (set VOCAB)\n", argv[1]);
        return 1;
    }
    long tok_n = -1, tok_diff = -1;
    const char *text_path = getenv("TEXT");
    if (text_path) { /* llama.cpp's own tokenization of the same text */
        FILE *f = fopen(text_path, "rb");
        if (!f) { fprintf(stderr, "llama_logits: TEXT %s: cannot open\n", text_path); return 1; }
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *text = malloc((size_t)len + 1);
        int32_t *lt = malloc(((size_t)len + 2) * sizeof *lt);
        if (!text || !lt || fread(text, 1, (size_t)len, f) != (size_t)len) { fprintf(stderr, "llama_logits: TEXT %s: cannot read\n", text_path); return 1; }
        fclose(f);
        int32_t m = llama_tokenize(vocab, text, (int32_t)len, lt, (int32_t)len + 2, true, false);
        if (m < 0) { fprintf(stderr, "llama_logits: TEXT %s: llama_tokenize failed (%d)\n", text_path, m); return 1; }
        const int32_t bos = llama_vocab_bos(vocab);
        const int32_t *a = lt, *bb = ids;
        size_t na = (size_t)m, nb = n;
        if (na && nb && a[0] == bos && bb[0] != bos) { a++; na--; }
        if (na && nb && bb[0] == bos && a[0] != bos) { bb++; nb--; }
        tok_n = (long)na;
        for (size_t i = 0; i < (na > nb ? na : nb); i++)
            if (i >= na || i >= nb || a[i] != bb[i]) { tok_diff = (long)i; break; }
        free(text);
        free(lt);
    }
    uint64_t thash = mk_fnv1a(MK_FNV_INIT, ids, n * sizeof(int32_t));
    mk_logits_header h = {.vocab = (uint64_t)V, .top_k = top_k, .ctx = ctx, .stride = ctx, .n_tokens = n, .tokens_hash = thash};
    mk_logits_writer *w = NULL;
    if (mk_logits_writer_open(&w, argv[5], &h)) {
        fprintf(stderr, "llama_logits: %s\n", mk_last_error());
        return 1;
    }
    double nll = 0;
    size_t scored = 0;
    struct llama_batch batch = llama_batch_init((int32_t)ctx, 0, 1);
    /* windows [b, e) at b = 0, ctx, 2·ctx, ...; positions b .. e-2 predict tokens b+1 .. e-1 */
    for (size_t b = 0; b + 1 < n; b += ctx) {
        const size_t e = b + ctx < n ? b + ctx : n;
        llama_memory_clear(llama_get_memory(lc), true);
        batch.n_tokens = 0;
        for (size_t p = b; p + 1 < e; p++) {
            const int32_t i = batch.n_tokens++;
            batch.token[i] = ids[p];
            batch.pos[i] = (llama_pos)(p - b);
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = 1;
        }
        if (llama_decode(lc, batch)) {
            fprintf(stderr, "llama_logits: llama_decode failed at window %zu\n", b / ctx);
            return 1;
        }
        for (size_t p = b; p + 1 < e; p++) {
            const float *row = llama_get_logits_ith(lc, (int32_t)(p - b));
            double mx = -INFINITY, s = 0;
            for (int32_t v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            for (int32_t v = 0; v < V; v++) s += exp((double)row[v] - mx);
            const double lse = mx + log(s);
            nll += lse - row[ids[p + 1]];
            scored++;
            if (mk_logits_writer_add(w, row, lse, ids[p + 1])) {
                fprintf(stderr, "llama_logits: %s\n", mk_last_error());
                return 1;
            }
        }
    }
    if (mk_logits_writer_close(w)) {
        fprintf(stderr, "llama_logits: %s\n", mk_last_error());
        return 1;
    }
    if (text_path)
        printf("{\"scored\": %zu, \"ppl\": %.8g, \"llama_tokens\": %ld, \"tokens_first_diff\": %ld}\n", scored, exp(nll / (double)scored), tok_n,
               tok_diff);
    else
        printf("{\"scored\": %zu, \"ppl\": %.8g}\n", scored, exp(nll / (double)scored));
    llama_batch_free(batch);
    llama_free(lc);
    llama_model_free(model);
    free(ids);
    return 0;
}
