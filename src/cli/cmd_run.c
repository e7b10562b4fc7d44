/* moekit run: generate from a prompt, streaming tokens as they are produced. */
#include "args.h"
#include "base/base.h"
#include "cli.h"
#include "moekit.h"
#include "route_cli.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moekit run [-m MODEL_DIR] (-p TEXT | --prompt-ids 1,2,3) [-n N] [options]\n"
            "Generates N tokens after the prompt and prints them as they come (text when the model\n"
            "has a tokenizer: a tokenizer.json in its directory, or tokenizer metadata in its GGUF file;\n"
            "else token ids).\n"
            "  -p, --prompt TEXT     prompt text, encoded with the model's tokenizer (special tokens added\n"
            "                        as its post-processor says, e.g. BOS)\n"
            "  --chat                treat TEXT as a user message: render it with the model's chat template\n"
            "                        (add_generation_prompt) and encode that without adding special tokens,\n"
            "                        as transformers' apply_chat_template(tokenize=True) does\n"
            "  --system TEXT         with --chat: a system message first\n"
            "  -m, --model DIR       HF checkpoint directory or GGUF file (default: $MOEKIT_MODEL, else\n"
            "                        models/testbed)\n"
            "  --prompt-ids LIST     prompt as comma-separated token ids\n"
            "  -n, --n-predict N     tokens to generate (default 32)\n"
            "  --temp T              sampling temperature; 0 = greedy (default 0)\n"
            "  --top-k K             keep the K most likely tokens (default 0 = off)\n"
            "  --top-p P             nucleus sampling threshold (default 1 = off)\n"
            "  --seed S              random seed (default 0)\n"
            "  --experts K           the same as --route topk:K\n"
            MK_CLI_ROUTE_HELP
            "  --scmoe A:B[:R]       self-contrast decoding (SCMoE): a weak pass routes each token to\n"
            "                        the expert of rank R only (default 2, i.e. the third) and the next\n"
            "                        token maximises (1+B)*strong - B*weak over tokens whose strong logit\n"
            "                        is within log(A) of the best (paper defaults A=0.1, B=0.5)\n"
            "  --ctx N               context size in tokens (default: prompt + N)\n"
            "  -t, --threads N       threads (default: all cores)\n"
            "  --ids                 print generated token ids even when a tokenizer is present\n"
            "  --ignore-eos          do not stop at the end-of-sequence token\n"
            "  --quiet-stats         do not print timings to stderr\n"
            MK_CLI_MMAP_HELP);
}

int mk_cmd_run(int argc, char **argv) {
    const char *dir = NULL;
    int32_t *prompt = NULL;
    const char *text = NULL;
    bool print_ids = false, chat = false;
    const char *system_msg = NULL;
    size_t n_prompt = 0;
    int64_t n_predict = 32, top_k = 0, experts = 0, n_ctx = 0, threads = 0, seed = 0;
    double temp = 0, top_p = 1;
    bool ignore_eos = false, stats = true, keep_mapped = false;
    mk_cli_route route = {0};
    double sc_alpha = 0, sc_beta = 0;
    int64_t sc_rank = 2;
    bool scmoe = false;
    char topk_spec[32];
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = mk_arg_value(argc, argv, &i))) goto out
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); rc = 0; goto out; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); dir = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VAL(); text = v; }
        else if (!strcmp(a, "--ids")) print_ids = true;
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "--system")) { VAL(); system_msg = v; }
        else if (!strcmp(a, "--prompt-ids")) { VAL(); free(prompt); if (!mk_arg_ids(a, v, &prompt, &n_prompt)) goto out; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { VAL(); if (!mk_arg_int(a, v, 0, 1 << 24, &n_predict)) goto out; }
        else if (!strcmp(a, "--temp")) { VAL(); if (!mk_arg_float(a, v, 0, 100, &temp)) goto out; }
        else if (!strcmp(a, "--top-k")) { VAL(); if (!mk_arg_int(a, v, 0, 1 << 30, &top_k)) goto out; }
        else if (!strcmp(a, "--top-p")) { VAL(); if (!mk_arg_float(a, v, 1e-9, 1, &top_p)) goto out; }
        else if (!strcmp(a, "--seed")) { VAL(); if (!mk_arg_int(a, v, 0, INT64_MAX, &seed)) goto out; }
        else if (!strcmp(a, "--experts")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 20, &experts)) goto out; }
        else if (!strcmp(a, "--route")) { VAL(); if (!mk_cli_route_add(&route, v)) goto out; }
        else if (!strcmp(a, "--scmoe")) {
            VAL();
            char *e1, *e2;
            sc_alpha = strtod(v, &e1);
            sc_beta = *e1 == ':' ? strtod(e1 + 1, &e2) : -1;
            if (*e1 == ':' && *e2 == ':') sc_rank = strtoll(e2 + 1, &e2, 10);
            if (*e1 != ':' || *e2 || !(sc_alpha > 0 && sc_alpha <= 1) || !(sc_beta >= 0) || sc_rank < 0) {
                fprintf(stderr, "moekit run: --scmoe '%s': expected ALPHA:BETA[:RANK] with 0 < ALPHA <= 1, BETA >= 0, RANK >= 0\n", v);
                goto out;
            }
            scmoe = true;
        }
        else if (!strcmp(a, "--ctx")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 24, &n_ctx)) goto out; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!mk_arg_int(a, v, 1, 1024, &threads)) goto out; }
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(a, "--quiet-stats")) stats = false;
        else if (!strcmp(a, "--mmap")) keep_mapped = true;
        else { fprintf(stderr, "moekit run: unknown option '%s' (moekit run --help)\n", a); goto out; }
#undef VAL
    }
    if (!prompt == !text) { fprintf(stderr, "moekit run: give a prompt with -p TEXT or --prompt-ids (moekit run --help)\n"); goto out; }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit run: no model given (-m DIR) and no default model found\n"); goto out; }
    if (threads) omp_set_num_threads((int)threads);

    rc = 1;
    mk_model *m = NULL;
    mk_ctx *c = NULL, *weak = NULL;
    mk_sampler *s = NULL;
    mk_tokenizer *tkz = NULL;
    mk_tokenizer_stream *tstream = NULL;
    float *logits = NULL, *wlogits = NULL;
    if (mk_cli_load_model(&m, dir, keep_mapped)) goto out;
    const mk_model_info *in = mk_model_get_info(m);
    bool has_tok = mk_tokenizer_present(dir);
    if (text && !has_tok) { fprintf(stderr, "moekit run: %s %s; give the prompt as --prompt-ids\n", dir, mk_cli_no_tokenizer(dir)); goto done; }
    if (has_tok && (text || !print_ids)) {
        if (mk_tokenizer_load(dir, &tkz)) { rc = mk_cli_fail(); goto done; }
        if (!print_ids && mk_tokenizer_stream_new(tkz, true, &tstream)) { rc = mk_cli_fail(); goto done; }
    }
    if (chat && !text) { fprintf(stderr, "moekit run: --chat needs the user message as -p TEXT\n"); rc = 2; goto done; }
    if (chat) {
        mk_chat_template *tpl = NULL;
        mk_chat_message msgs[2];
        size_t nm = 0;
        if (system_msg) msgs[nm++] = (mk_chat_message){"system", system_msg};
        msgs[nm++] = (mk_chat_message){"user", text};
        char *rendered = NULL;
        if (mk_chat_template_load(dir, NULL, &tpl) || mk_chat_template_render(tpl, msgs, nm, true, &rendered)) {
            mk_chat_template_free(tpl);
            rc = mk_cli_fail();
            goto done;
        }
        mk_chat_template_free(tpl);
        mk_status est = mk_tokenizer_encode(tkz, rendered, strlen(rendered), false, &prompt, &n_prompt);
        free(rendered);
        if (est) { rc = mk_cli_fail(); goto done; }
    } else if (text) {
        if (mk_tokenizer_encode(tkz, text, strlen(text), true, &prompt, &n_prompt)) { rc = mk_cli_fail(); goto done; }
        if (n_prompt == 0) { fprintf(stderr, "moekit run: the prompt encodes to no tokens\n"); goto done; }
    }
    int32_t eos = tkz && mk_tokenizer_eos_id(tkz) >= 0 ? mk_tokenizer_eos_id(tkz) : in->eos_id;
    size_t need = n_prompt + (size_t)n_predict;
    if (!n_ctx) n_ctx = (int64_t)need;
    if ((size_t)n_ctx < need) { fprintf(stderr, "moekit run: --ctx %lld is smaller than prompt + n (%zu)\n", (long long)n_ctx, need); rc = 2; goto done; }
    mk_sampler_opts so = {.temp = (float)temp, .top_k = top_k, .top_p = (float)top_p, .seed = (uint64_t)seed};
    if (experts) {
        snprintf(topk_spec, sizeof topk_spec, "topk:%lld", (long long)experts);
        if (!mk_cli_route_add(&route, topk_spec)) goto done;
    }
    if (mk_ctx_new(&c, m, (size_t)n_ctx, 512) || mk_cli_route_apply(&route, m, c) || mk_sampler_new(&s, in->vocab, &so)) { rc = mk_cli_fail(); goto done; }
    logits = malloc((size_t)in->vocab * sizeof(float));
    wlogits = malloc((size_t)in->vocab * sizeof(float));
    if (!logits || !wlogits) { fprintf(stderr, "moekit run: out of memory\n"); goto done; }
    if (scmoe) {
        mk_route_opts wr = {.rank_only = true, .rank = sc_rank};
        if (mk_ctx_new(&weak, m, (size_t)n_ctx, 512) || mk_ctx_set_route(weak, &wr)) { rc = mk_cli_fail(); goto done; }
    }

    double t0 = mk_wall();
    if (mk_ctx_forward(c, prompt, n_prompt, MK_LOGITS_LAST, logits)) { rc = mk_cli_fail(); goto done; }
    if (weak && mk_ctx_forward(weak, prompt, n_prompt, MK_LOGITS_LAST, wlogits)) { rc = mk_cli_fail(); goto done; }
    double t1 = mk_wall();
    int64_t made = 0;
    for (; made < n_predict; made++) {
        if (weak) mk_scmoe_scores(logits, wlogits, in->vocab, (float)sc_alpha, (float)sc_beta);
        int32_t tok = mk_sampler_pick(s, logits);
        if (tstream) {
            const char *piece;
            size_t plen;
            if (mk_tokenizer_stream_feed(tstream, tok, &piece, &plen)) { rc = mk_cli_fail(); goto done; }
            fwrite(piece, 1, plen, stdout);
        } else {
            printf("%s%d", made ? " " : "", tok);
        }
        fflush(stdout);
        if (!ignore_eos && tok == eos) { made++; break; }
        if (made + 1 < n_predict && mk_ctx_forward(c, &tok, 1, MK_LOGITS_LAST, logits)) { rc = mk_cli_fail(); goto done; }
        if (weak && made + 1 < n_predict && mk_ctx_forward(weak, &tok, 1, MK_LOGITS_LAST, wlogits)) { rc = mk_cli_fail(); goto done; }
    }
    if (tstream) {
        const char *piece;
        size_t plen;
        if (!mk_tokenizer_stream_flush(tstream, &piece, &plen)) fwrite(piece, 1, plen, stdout);
    }
    printf("\n");
    double t2 = mk_wall();
    if (stats)
        fprintf(stderr, "prompt: %zu tokens, %.1f tok/s; generated: %lld tokens, %.1f tok/s; %d threads\n", n_prompt,
                (double)n_prompt / (t1 - t0), (long long)made, made > 1 ? (double)(made - 1) / (t2 - t1) : 0.0, omp_get_max_threads());
    if (stats && route.n) mk_cli_route_report(m, c, stderr);
    rc = 0;
done:
    mk_tokenizer_stream_free(tstream);
    mk_tokenizer_free(tkz);
    free(logits);
    free(wlogits);
    mk_ctx_free(weak);
    mk_sampler_free(s);
    mk_ctx_free(c);
    mk_model_free(m);
out:
    mk_cli_route_free(&route);
    free(prompt);
    return rc;
}
