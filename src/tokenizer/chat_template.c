/* Chat templates: loading from a model directory and rendering messages (see include/moekit/chat.h).
 * The Jinja interpreter is in jinja_parse.c / jinja_eval.c. */
#include "moekit/chat.h"
#include "tokenizer/jinja.h"

#include <stdlib.h>
#include <string.h>

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

mk_status mk_chat_template_load(const char *model_dir, const char *name, mk_chat_template **out) {
    if (!out) return mk_err(MK_ERR_ARG, "mk_chat_template_load: out is NULL");
    *out = NULL;
    if (!model_dir) return mk_err(MK_ERR_ARG, "mk_chat_template_load: model_dir is NULL");
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
