/* Super-expert rule (Su et al. 2025) against tests/fixtures/methods/super_rule.json, written by
 * tools/gen_methods_reference.py from a numpy restatement of the paper's _identify_super_experts. */
#include "mk_test.h"
#include "analyze/profile_int.h"

#include <jansson.h>

static void test_rule_reference(void) {
    json_error_t je;
    json_t *root = json_load_file("tests/fixtures/methods/super_rule.json", 0, &je);
    REQUIRE(root, "super_rule.json: %s", je.text);
    json_t *cases = json_object_get(root, "cases");
    REQUIRE(json_array_size(cases) == 3, "super_rule.json: expected 3 cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *k = json_array_get(cases, c);
        const char *name = json_string_value(json_object_get(k, "name"));
        json_t *ml = json_object_get(k, "moe_layers"), *jv = json_object_get(k, "values"), *jc = json_object_get(k, "count");
        const int64_t n_moe = (int64_t)json_array_size(ml), E = json_integer_value(json_object_get(k, "n_expert"));
        double *vals = calloc((size_t)(n_moe * E), sizeof *vals);
        int64_t *count = calloc((size_t)(n_moe * E), sizeof *count), *moe = calloc((size_t)n_moe, sizeof *moe);
        for (int64_t li = 0; li < n_moe; li++) {
            moe[li] = json_integer_value(json_array_get(ml, (size_t)li));
            for (int64_t e = 0; e < E; e++) {
                vals[li * E + e] = json_number_value(json_array_get(json_array_get(jv, (size_t)li), (size_t)e));
                count[li * E + e] = json_integer_value(json_array_get(json_array_get(jc, (size_t)li), (size_t)e));
            }
        }
        mk_super_expert *se = NULL;
        size_t n = 0;
        int64_t incl;
        double p995, fl;
        REQUIRE(mk_super_experts_rule(vals, count, moe, n_moe, E, json_integer_value(json_object_get(k, "n_layer")), &se, &n, &incl, &p995,
                                      &fl) == MK_OK, "%s", mk_last_error());
        const double rp = json_number_value(json_object_get(k, "percentile_99_5")), rf = json_number_value(json_object_get(k, "floor_max_10"));
        CHECK(incl == json_integer_value(json_object_get(k, "n_incl")), "%s: %lld layers included", name, (long long)incl);
        CHECK(fabs(p995 - rp) <= 1e-12 * fabs(rp), "%s: P99.5 %.15g, reference %.15g", name, p995, rp);
        CHECK(fl == rf, "%s: floor(max/10) %g, reference %g", name, fl, rf);
        json_t *ref = json_object_get(k, "super_experts");
        CHECK(n == json_array_size(ref), "%s: %zu super experts, reference %zu", name, n, json_array_size(ref));
        for (size_t i = 0; i < n && i < json_array_size(ref); i++) {
            json_t *r = json_array_get(ref, i);
            CHECK(se[i].li == json_integer_value(json_array_get(r, 0)) && se[i].e == json_integer_value(json_array_get(r, 1)),
                  "%s: #%zu is (%lld, %lld), reference (%lld, %lld)", name, i, (long long)se[i].li, (long long)se[i].e,
                  (long long)json_integer_value(json_array_get(r, 0)), (long long)json_integer_value(json_array_get(r, 1)));
        }
        free(se);
        free(vals);
        free(count);
        free(moe);
    }
    json_decref(root);
}

int main(void) {
    RUN(test_rule_reference);
    return TEST_SUMMARY("test_super");
}
