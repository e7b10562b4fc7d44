/* Chat templates: loading from a model directory and rendering messages (see include/moekit/chat.h).
 * The Jinja interpreter is in jinja_parse.c / jinja_eval.c. */
#include "format/gguf.h"
#include "moekit/chat.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

struct mk_chat_template {
    jinja_tpl *tpl;
    char *source;
    char *label;
    json_t *tokens; /* object: special-token name -> string */
};

static const char *const SPECIAL_TOKENS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token"};

static mk_status new_from(const char *source, const char *label, json_t *tokens, mk_chat_template **out) {
    mk_chat_template *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(tokens);
        return mk_err(MK_ERR_NOMEM, "%s: out of memory", label);
    }
    t->tokens = tokens ? tokens : json_object();
    t->source = mk_strdup(source);
    t->label = mk_strdup(label);
    if (!t->tokens || !t->source || !t->label) {
        mk_chat_template_free(t);
        return mk_err(MK_ERR_NOMEM, "%s: out of memory", label);
    }
    mk_status st = jinja_compile(t->source, strlen(t->source), t->label, &t->tpl);
    if (st) {
        mk_chat_template_free(t);
        return st;
    }
    *out = t;
    return MK_OK;
}

mk_status mk_chat_template_new(const char *source, const char *label, const char *special_tokens_json,
                               mk_chat_template **out) {
    if (!out) return mk_err(MK_ERR_ARG, "mk_chat_template_new: out is NULL");
    *out = NULL;
    if (!label) label = "chat template";
    if (!source) return mk_err(MK_ERR_ARG, "%s: source is NULL", label);
    json_t *tokens = NULL;
    if (special_tokens_json) {
        json_error_t je;
        tokens = json_loads(special_tokens_json, 0, &je);
        if (!tokens || !json_is_object(tokens)) {
            json_decref(tokens);
            return mk_err(MK_ERR_ARG, "%s: special tokens: expected a JSON object (%s)", label,
                          tokens ? "not an object" : je.text);
        }
    }
    return new_from(source, label, tokens, out);
}

/* tokenizer_config.json special tokens: string, {"content": string}, or null. */
static mk_status read_tokens(json_t *cfg, const char *path, json_t **out) {
    json_t *tokens = json_object();
    if (!tokens) return mk_err(MK_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < sizeof SPECIAL_TOKENS / sizeof SPECIAL_TOKENS[0]; i++) {
        json_t *v = json_object_get(cfg, SPECIAL_TOKENS[i]);
        if (!v || json_is_null(v)) continue;
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!json_is_string(v)) {
            json_decref(tokens);
            return mk_err(MK_ERR_FORMAT, "%s: '%s': expected a string or an object with a string 'content'", path,
                          SPECIAL_TOKENS[i]);
        }
        json_object_set(tokens, SPECIAL_TOKENS[i], v);
    }
    *out = tokens;
    return MK_OK;
}

/* ---- GGUF files: tokenizer.chat_template[.<name>], special tokens from the token ids ---------- */

static const char *const GGUF_TOKEN_IDS[][2] = {
    {"bos_token", "tokenizer.ggml.bos_token_id"},     {"eos_token", "tokenizer.ggml.eos_token_id"},
    {"unk_token", "tokenizer.ggml.unknown_token_id"}, {"sep_token", "tokenizer.ggml.seperator_token_id"},
    {"pad_token", "tokenizer.ggml.padding_token_id"}, {"cls_token", "tokenizer.ggml.cls_token_id"},
    {"mask_token", "tokenizer.ggml.mask_token_id"},
};

/* The template source of metadata key `key` (a string without NUL), or MK_ERR_MISSING. */
static mk_status gguf_template(const mk_gguf *g, const char *key, const char **src, size_t *len) {
    const mk_gguf_kv *kv = mk_gguf_find(g, key);
    if (!kv) return MK_ERR_MISSING;
    if (kv->type != MK_GGUF_STRING)
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be a string, not %s", g->map.path, key, mk_gguf_type_name(kv->type));
    if (memchr(kv->data, 0, (size_t)kv->str_len))
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' contains a NUL byte", g->map.path, key);
    *src = (const char *)kv->data;
    *len = (size_t)kv->str_len;
    return MK_OK;
}

/* Special-token variables of a GGUF file: the strings of its bos/eos/... token ids. */
static mk_status gguf_tokens(const mk_gguf *g, json_t **out) {
    json_t *tokens = json_object();
    if (!tokens) return mk_err(MK_ERR_NOMEM, "%s: out of memory", g->map.path);
    const mk_gguf_kv *list = mk_gguf_find(g, "tokenizer.ggml.tokens");
    for (size_t i = 0; list && i < sizeof GGUF_TOKEN_IDS / sizeof GGUF_TOKEN_IDS[0]; i++) {
        int64_t id;
        mk_status st = mk_gguf_get_int(g, GGUF_TOKEN_IDS[i][1], &id);
        if (st == MK_ERR_MISSING) continue;
        const char *p = NULL;
        uint64_t len = 0;
        if (!st && (id < 0 || !mk_gguf_arr_str(list, (uint64_t)id, &p, &len)))
            st = mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' = %lld is not the index of a string in tokenizer.ggml.tokens", g->map.path,
                        GGUF_TOKEN_IDS[i][1], (long long)id);
        json_t *v = st ? NULL : json_stringn(p, (size_t)len);
        if (!st && !v)
            st = mk_err(MK_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%lld] (the '%s') is not valid UTF-8", g->map.path, (long long)id,
                        GGUF_TOKEN_IDS[i][1]);
        if (st) {
            json_decref(tokens);
            return st;
        }
        json_object_set_new(tokens, GGUF_TOKEN_IDS[i][0], v);
    }
    *out = tokens;
    return MK_OK;
}

static mk_status load_gguf(const char *path, const char *name, mk_chat_template **out) {
    mk_gguf *g = NULL;
    mk_status st = mk_gguf_open(&g, path);
    if (st) return st;
    char key[300], label[4400];
    if (name && strcmp(name, "default") != 0) snprintf(key, sizeof key, "tokenizer.chat_template.%.256s", name);
    else snprintf(key, sizeof key, "tokenizer.chat_template");
    const char *src;
    size_t len;
    json_t *tokens = NULL;
    char *copy = NULL;
    st = gguf_template(g, key, &src, &len);
    if (st == MK_ERR_MISSING) st = mk_err(MK_ERR_MISSING, "%s: no chat template (metadata key '%s' is missing)", path, key);
    if (!st) st = gguf_tokens(g, &tokens);
    if (!st && !(copy = mk_malloc(len + 1))) st = MK_ERR_NOMEM;
    if (!st) {
        memcpy(copy, src, len);
        copy[len] = 0;
        snprintf(label, sizeof label, "%s: %s", path, key);
        st = new_from(copy, label, tokens, out);
        tokens = NULL;
    }
    free(copy);
    json_decref(tokens);
    mk_gguf_free(g);
    return st;
}

static bool is_gguf_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && mk_gguf_sniff(path);
}

/* additional_chat_templates/<name>.jinja (transformers' layout), in name order. */
static mk_status each_additional(const char *model_dir, tk_template_fn fn, void *user) {
    char *dir = mk_path_join(model_dir, "additional_chat_templates");
    if (!dir) return MK_ERR_NOMEM;
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    mk_status st = MK_OK;
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        size_t l = strlen(nm);
        if (!st && nm[0] != '.' && l > 6 && !strcmp(nm + l - 6, ".jinja")) {
            char *path = mk_path_join(dir, nm), *text = NULL, *name = mk_malloc(l - 5);
            size_t len;
            if (!path || !name) st = MK_ERR_NOMEM;
            else if (!(st = mk_read_file(path, &text, &len))) {
                memcpy(name, nm, l - 6);
                name[l - 6] = 0;
                st = strlen(text) != len ? mk_err(MK_ERR_FORMAT, "%s: contains a NUL byte", path) : fn(user, name, text);
            }
            free(text);
            free(name);
            free(path);
        }
        free(ents[i]);
    }
    free(ents);
    free(dir);
    return st;
}

mk_status tk_chat_templates_each(const char *model_path, tk_template_fn fn, void *user) {
    mk_status st = MK_OK;
    if (is_gguf_file(model_path)) {
        mk_gguf *g = NULL;
        if ((st = mk_gguf_open(&g, model_path))) return st;
        const char *pfx = "tokenizer.chat_template";
        const size_t pl = strlen(pfx);
        for (size_t i = 0; i < g->n_kv && !st; i++) {
            const char *k = g->kv[i].key;
            if (strncmp(k, pfx, pl) || (k[pl] && (k[pl] != '.' || !k[pl + 1]))) continue;
            const char *src;
            size_t len;
            char *copy = NULL;
            if ((st = gguf_template(g, k, &src, &len))) break;
            if (!(copy = mk_malloc(len + 1))) { st = MK_ERR_NOMEM; break; }
            memcpy(copy, src, len);
            copy[len] = 0;
            st = fn(user, k[pl] ? k + pl + 1 : NULL, copy);
            free(copy);
        }
        mk_gguf_free(g);
        return st;
    }
    char *cfg_path = mk_path_join(model_path, "tokenizer_config.json");
    char *jinja_path = mk_path_join(model_path, "chat_template.jinja");
    char *text = NULL;
    json_t *cfg = NULL;
    size_t len;
    bool have_default = false;
    if (!cfg_path || !jinja_path) { st = MK_ERR_NOMEM; goto done; }
    if (mk_file_exists(jinja_path)) {
        if ((st = mk_read_file(jinja_path, &text, &len))) goto done;
        if (strlen(text) != len) { st = mk_err(MK_ERR_FORMAT, "%s: contains a NUL byte", jinja_path); goto done; }
        if ((st = fn(user, NULL, text))) goto done;
        have_default = true;
        free(text);
        text = NULL;
    }
    if (!mk_file_exists(cfg_path)) {
        st = each_additional(model_path, fn, user);
        goto done;
    }
    if ((st = mk_read_file(cfg_path, &text, &len))) goto done;
    json_error_t je;
    cfg = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &je);
    if (!cfg) { st = mk_err(MK_ERR_FORMAT, "%s: invalid JSON at line %d: %s", cfg_path, je.line, je.text); goto done; }
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) {
        if (strlen(json_string_value(ct)) != json_string_length(ct)) {
            st = mk_err(MK_ERR_FORMAT, "%s: 'chat_template' contains a NUL character", cfg_path);
            goto done;
        }
        if (!have_default) st = fn(user, NULL, json_string_value(ct));
    } else if (json_is_array(ct)) {
        size_t i;
        json_t *it;
        json_array_foreach(ct, i, it) {
            json_t *nm = json_object_get(it, "name"), *tp = json_object_get(it, "template");
            if (!json_is_string(nm) || !json_is_string(tp) || strlen(json_string_value(tp)) != json_string_length(tp) ||
                strlen(json_string_value(nm)) != json_string_length(nm)) {
                st = mk_err(MK_ERR_FORMAT, "%s: 'chat_template'[%zu]: expected {\"name\": string, \"template\": string}", cfg_path, i);
                goto done;
            }
            bool dflt = !strcmp(json_string_value(nm), "default") || (json_array_size(ct) == 1);
            if (dflt && have_default) continue;
            if ((st = fn(user, dflt ? NULL : json_string_value(nm), json_string_value(tp)))) goto done;
            have_default |= dflt;
        }
    } else if (ct && !json_is_null(ct)) {
        st = mk_err(MK_ERR_FORMAT, "%s: 'chat_template': expected a string or a list of named templates", cfg_path);
    }
    if (!st) st = each_additional(model_path, fn, user);
done:
    free(text);
    json_decref(cfg);
    free(cfg_path);
    free(jinja_path);
    return st;
}

mk_status mk_chat_template_load(const char *model_dir, const char *name, mk_chat_template **out) {
    if (!out) return mk_err(MK_ERR_ARG, "mk_chat_template_load: out is NULL");
    *out = NULL;
    if (!model_dir) return mk_err(MK_ERR_ARG, "mk_chat_template_load: model_dir is NULL");
    if (is_gguf_file(model_dir)) return load_gguf(model_dir, name, out);
    char *cfg_path = mk_path_join(model_dir, "tokenizer_config.json");
    char *jinja_path = mk_path_join(model_dir, "chat_template.jinja");
    json_t *cfg = NULL, *tokens = NULL;
    char *text = NULL;
    mk_status st = MK_OK;
    if (!cfg_path || !jinja_path) { st = MK_ERR_NOMEM; goto done; }
    if (name && strcmp(name, "default") != 0) { /* additional_chat_templates/<name>.jinja */
        if (!*name || strchr(name, '/') || strchr(name, '\\') || name[0] == '.') {
            st = mk_err(MK_ERR_ARG, "%s: bad chat template name '%s'", model_dir, name);
            goto done;
        }
        char rel[300];
        snprintf(rel, sizeof rel, "additional_chat_templates/%.256s.jinja", name);
        char *extra_path = mk_path_join(model_dir, rel);
        if (!extra_path) { st = MK_ERR_NOMEM; goto done; }
        if (mk_file_exists(extra_path)) {
            free(jinja_path);
            jinja_path = extra_path;
        } else {
            free(extra_path);
        }
    }
    bool have_cfg = mk_file_exists(cfg_path), have_jinja = mk_file_exists(jinja_path);
    if (have_jinja && name && strcmp(name, "default") != 0 && !strstr(jinja_path, "additional_chat_templates/"))
        have_jinja = false; /* chat_template.jinja is the default template; a named one is looked up below */
    if (!have_cfg && !have_jinja) {
        if (name && strcmp(name, "default") != 0)
            st = mk_err(MK_ERR_MISSING, "%s: no chat template named '%s'", model_dir, name);
        else
            st = mk_err(MK_ERR_MISSING, "%s: no tokenizer_config.json or chat_template.jinja", model_dir);
        goto done;
    }
    if (have_cfg) {
        size_t len;
        if ((st = mk_read_file(cfg_path, &text, &len))) goto done;
        json_error_t je;
        cfg = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &je); /* model_max_length can exceed int64 */
        free(text);
        text = NULL;
        if (!cfg) {
            st = mk_err(MK_ERR_FORMAT, "%s: invalid JSON at line %d: %s", cfg_path, je.line, je.text);
            goto done;
        }
        if (!json_is_object(cfg)) {
            st = mk_err(MK_ERR_FORMAT, "%s: expected a JSON object", cfg_path);
            goto done;
        }
        if ((st = read_tokens(cfg, cfg_path, &tokens))) goto done;
    }
    if (have_jinja) {
        size_t len;
        if ((st = mk_read_file(jinja_path, &text, &len))) goto done;
        if (strlen(text) != len) {
            st = mk_err(MK_ERR_FORMAT, "%s: contains a NUL byte", jinja_path);
            goto done;
        }
        st = new_from(text, jinja_path, tokens, out);
        tokens = NULL;
        goto done;
    }
    json_t *ct = json_object_get(cfg, "chat_template");
    const char *src = NULL;
    if (!ct || json_is_null(ct)) {
        st = mk_err(MK_ERR_MISSING, "%s: no 'chat_template' (and no chat_template.jinja beside it)", cfg_path);
        goto done;
    }
    if (json_is_string(ct)) {
        if (name && strcmp(name, "default") != 0) {
            st = mk_err(MK_ERR_MISSING, "%s: 'chat_template' is a single template, not one named '%s'", cfg_path, name);
            goto done;
        }
        src = json_string_value(ct);
    } else if (json_is_array(ct)) {
        size_t i;
        json_t *it;
        const char *want = name ? name : "default";
        json_array_foreach(ct, i, it) {
            json_t *nm = json_object_get(it, "name"), *tp = json_object_get(it, "template");
            if (!json_is_string(nm) || !json_is_string(tp)) {
                st = mk_err(MK_ERR_FORMAT, "%s: 'chat_template'[%zu]: expected {\"name\": string, \"template\": string}",
                            cfg_path, i);
                goto done;
            }
            if (!strcmp(json_string_value(nm), want)) src = json_string_value(tp);
        }
        if (!src && !name && json_array_size(ct) == 1) src = json_string_value(json_object_get(json_array_get(ct, 0), "template"));
        if (!src) {
            st = mk_err(MK_ERR_MISSING, "%s: 'chat_template' has no template named '%s'", cfg_path, want);
            goto done;
        }
    } else {
        st = mk_err(MK_ERR_FORMAT, "%s: 'chat_template': expected a string or a list of named templates", cfg_path);
        goto done;
    }
    if (json_is_string(ct) && strlen(src) != json_string_length(ct)) {
        st = mk_err(MK_ERR_FORMAT, "%s: 'chat_template' contains a NUL character", cfg_path);
        goto done;
    }
    st = new_from(src, cfg_path, tokens, out);
    tokens = NULL;
done:
    free(text);
    json_decref(cfg);
    json_decref(tokens);
    free(cfg_path);
    free(jinja_path);
    return st;
}

/* Prepares messages as apply_chat_template does: drops null-valued fields, then aliases reasoning
 * fields ({"thinking": r, **message, "reasoning_content": r}). Returns a new reference or NULL. */
static json_t *prepare_messages(const mk_chat_template *t, json_t *msgs) {
    static const char *const REASONING[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *res = json_array();
    if (!res) { mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label); return NULL; }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            json_decref(res);
            mk_err(MK_ERR_ARG, "%s: message %zu: expected a JSON object", t->label, i);
            return NULL;
        }
        json_t *r = NULL;
        for (size_t k = 0; k < 3 && !r; k++) {
            json_t *v = json_object_get(m, REASONING[k]);
            if (v && !json_is_null(v)) r = v;
        }
        json_t *o = json_object();
        if (!o) break;
        if (r) json_object_set(o, "thinking", r);
        const char *key;
        json_t *v;
        json_object_foreach(m, key, v) {
            if (!json_is_null(v)) json_object_set(o, key, v);
        }
        if (r) json_object_set(o, "reasoning_content", r);
        json_array_append_new(res, o);
    }
    if (json_array_size(res) != json_array_size(msgs)) {
        json_decref(res);
        mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label);
        return NULL;
    }
    return res;
}

static mk_status render(const mk_chat_template *t, json_t *msgs, json_t *extra, bool add_gen, char **out) {
    json_t *vars = json_object(), *pm = prepare_messages(t, msgs);
    if (!vars || !pm) {
        json_decref(vars);
        json_decref(pm);
        return pm ? mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label) : MK_ERR_ARG;
    }
    json_object_update(vars, t->tokens);
    json_object_set_new(vars, "tools", json_null());
    json_object_set_new(vars, "documents", json_null());
    if (extra) json_object_update(vars, extra);
    json_object_set_new(vars, "messages", pm);
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_gen));
    mk_status st = jinja_render(t->tpl, vars, out, NULL);
    json_decref(vars);
    return st;
}

mk_status mk_chat_template_render(const mk_chat_template *t, const mk_chat_message *msgs, size_t n_msg,
                                  bool add_generation_prompt, char **out) {
    if (!out) return mk_err(MK_ERR_ARG, "mk_chat_template_render: out is NULL");
    *out = NULL;
    if (!t || (!msgs && n_msg)) return mk_err(MK_ERR_ARG, "mk_chat_template_render: template or messages is NULL");
    json_t *arr = json_array();
    if (!arr) return mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label);
    for (size_t i = 0; i < n_msg; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            json_decref(arr);
            return mk_err(MK_ERR_ARG, "%s: message %zu: role or content is NULL", t->label, i);
        }
        json_t *o = json_pack("{s:s, s:s}", "role", msgs[i].role, "content", msgs[i].content);
        if (!o) {
            json_decref(arr);
            return mk_err(MK_ERR_ARG, "%s: message %zu: role or content is not valid UTF-8", t->label, i);
        }
        json_array_append_new(arr, o);
    }
    mk_status st = render(t, arr, NULL, add_generation_prompt, out);
    json_decref(arr);
    return st;
}

mk_status mk_chat_template_render_json(const mk_chat_template *t, const char *messages_json, const char *extra_json,
                                       bool add_generation_prompt, char **out) {
    if (!out) return mk_err(MK_ERR_ARG, "mk_chat_template_render_json: out is NULL");
    *out = NULL;
    if (!t || !messages_json) return mk_err(MK_ERR_ARG, "mk_chat_template_render_json: template or messages is NULL");
    json_error_t je;
    json_t *msgs = json_loads(messages_json, 0, &je);
    if (!msgs || !json_is_array(msgs)) {
        json_decref(msgs);
        return mk_err(MK_ERR_ARG, "%s: messages: expected a JSON array (%s)", t->label, msgs ? "not an array" : je.text);
    }
    json_t *extra = NULL;
    if (extra_json) {
        extra = json_loads(extra_json, 0, &je);
        if (!extra || !json_is_object(extra)) {
            json_decref(msgs);
            json_decref(extra);
            return mk_err(MK_ERR_ARG, "%s: extra variables: expected a JSON object (%s)", t->label,
                          extra ? "not an object" : je.text);
        }
    }
    mk_status st = render(t, msgs, extra, add_generation_prompt, out);
    json_decref(msgs);
    json_decref(extra);
    return st;
}

const char *mk_chat_template_source(const mk_chat_template *t) { return t ? t->source : NULL; }
const char *mk_chat_template_label(const mk_chat_template *t) { return t ? t->label : NULL; }
const char *mk_chat_template_token(const mk_chat_template *t, const char *name) {
    if (!t || !name) return NULL;
    return json_string_value(json_object_get(t->tokens, name));
}

void mk_chat_template_free(mk_chat_template *t) {
    if (!t) return;
    jinja_free(t->tpl);
    json_decref(t->tokens);
    free(t->source);
    free(t->label);
    free(t);
}
