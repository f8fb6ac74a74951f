// Runs llama.cpp's reference quantizers (ggml/src/ggml-quants.c) on raw f32
// input, for tests/llama_cpp_ref.rs. Built against a llama.cpp checkout:
//
//   cc -O2 -std=c11 -DNDEBUG -I$LLAMA/ggml/include -I$LLAMA/ggml/src \
//      harness.c $LLAMA/ggml/src/ggml-quants.c -lm -o cref
//   cref TYPE N_PER_ROW IN.f32 OUT.bin
//
// TYPE is a ggml type name; the function called is the one
// ggml_quantize_chunk (llama-quantize) uses without an importance matrix,
// or quantize_row_*_ref for the types that have no chunk quantizer.

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"
#include "ggml-quants.h"

// The few ggml.c symbols ggml-quants.c links against.
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    (void) fmt;
    fprintf(stderr, "ggml_abort at %s:%d\n", file, line);
    abort();
}

struct geometry { enum ggml_type type; const char * name; int64_t block; size_t bytes; };

static const struct geometry TYPES[] = {
    { GGML_TYPE_Q4_0, "Q4_0", 32, 18 },     { GGML_TYPE_Q4_1, "Q4_1", 32, 20 },
    { GGML_TYPE_Q5_0, "Q5_0", 32, 22 },     { GGML_TYPE_Q5_1, "Q5_1", 32, 24 },
    { GGML_TYPE_Q8_0, "Q8_0", 32, 34 },     { GGML_TYPE_Q8_1, "Q8_1", 32, 36 },
    { GGML_TYPE_Q2_K, "Q2_K", 256, 84 },    { GGML_TYPE_Q3_K, "Q3_K", 256, 110 },
    { GGML_TYPE_Q4_K, "Q4_K", 256, 144 },   { GGML_TYPE_Q5_K, "Q5_K", 256, 176 },
    { GGML_TYPE_Q6_K, "Q6_K", 256, 210 },   { GGML_TYPE_Q8_K, "Q8_K", 256, 292 },
    { GGML_TYPE_IQ4_NL, "IQ4_NL", 32, 18 }, { GGML_TYPE_IQ4_XS, "IQ4_XS", 256, 136 },
    { GGML_TYPE_TQ1_0, "TQ1_0", 256, 54 },  { GGML_TYPE_TQ2_0, "TQ2_0", 256, 66 },
    { GGML_TYPE_MXFP4, "MXFP4", 32, 17 },   { GGML_TYPE_NVFP4, "NVFP4", 64, 36 },
};
#define N_TYPES (sizeof(TYPES) / sizeof(TYPES[0]))

static const struct geometry * find(enum ggml_type t) {
    for (size_t i = 0; i < N_TYPES; i++) if (TYPES[i].type == t) return &TYPES[i];
    fprintf(stderr, "no geometry for type %d\n", (int) t);
    abort();
}

size_t ggml_type_size(enum ggml_type t) { return find(t)->bytes; }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { return find(t)->bytes * (size_t) (ne / find(t)->block); }
const char * ggml_type_name(enum ggml_type t) { return find(t)->name; }

int main(int argc, char ** argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s TYPE N_PER_ROW IN.f32 OUT.bin\n", argv[0]);
        return 2;
    }
    const struct geometry * g = NULL;
    for (size_t i = 0; i < N_TYPES; i++) if (strcmp(TYPES[i].name, argv[1]) == 0) g = &TYPES[i];
    if (!g) { fprintf(stderr, "unsupported type %s\n", argv[1]); return 2; }
    const int64_t n_per_row = atoll(argv[2]);

    FILE * f = fopen(argv[3], "rb");
    if (!f) { perror(argv[3]); return 1; }
    fseek(f, 0, SEEK_END);
    const long n_bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    const int64_t n = n_bytes / 4;
    if (n_per_row <= 0 || n_per_row % g->block != 0 || n % n_per_row != 0) {
        fprintf(stderr, "bad sizes: %lld values, rows of %lld\n", (long long) n, (long long) n_per_row);
        return 2;
    }
    float * x = malloc((size_t) n_bytes);
    if (fread(x, 1, (size_t) n_bytes, f) != (size_t) n_bytes) { perror("read"); return 1; }
    fclose(f);

    const int64_t nrow = n / n_per_row;
    const size_t out_bytes = (size_t) (n / g->block) * g->bytes;
    void * y = calloc(out_bytes, 1);

    switch (g->type) {
        case GGML_TYPE_Q4_0:   quantize_q4_0(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q4_1:   quantize_q4_1(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q5_0:   quantize_q5_0(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q5_1:   quantize_q5_1(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q8_0:   quantize_q8_0(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q8_1:   quantize_row_q8_1_ref(x, y, n); break;
        case GGML_TYPE_Q2_K:   quantize_q2_K(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q3_K:   quantize_q3_K(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q4_K:   quantize_q4_K(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q5_K:   quantize_q5_K(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q6_K:   quantize_q6_K(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_Q8_K:   quantize_row_q8_K_ref(x, y, n); break;
        case GGML_TYPE_IQ4_NL: quantize_iq4_nl(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_IQ4_XS: quantize_iq4_xs(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_TQ1_0:  quantize_tq1_0(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_TQ2_0:  quantize_tq2_0(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_MXFP4:  quantize_mxfp4(x, y, nrow, n_per_row, NULL); break;
        case GGML_TYPE_NVFP4:  quantize_nvfp4(x, y, nrow, n_per_row, NULL); break;
        default: return 2;
    }

    FILE * o = fopen(argv[4], "wb");
    if (!o || fwrite(y, 1, out_bytes, o) != out_bytes) { perror(argv[4]); return 1; }
    fclose(o);
    free(x);
    free(y);
    return 0;
}
