/* The CPU kernels, compiled on first use by qwen3/engine/cpu_kernels.py (gcc/clang, -O3 -march=native -fopenmp)
 * into one library and called through ctypes. They share torch's OpenMP runtime (same libgomp soname), so
 * torch.set_num_threads applies to them too. AVX-512 / AVX512-BF16 intrinsics where the compiler targets them,
 * portable loops otherwise (the GEMM and the prefill attention need AVX512-BF16; callers check).
 *
 * The files of kernels/ form one translation unit, included here in dependency order (a later file uses the
 * earlier ones):
 * - common.h: bf16 <-> fp32, loads of either dtype, exp, limits;
 * - int8_matvec.c: woq_int8_matmul, weight-only int8 products for decode batches of at most 8 rows;
 * - elementwise.c: add + RMSNorm, SiLU x up, QK-norm + RoPE of a head, rounded where the torch layer rounds;
 * - decode_attention.c: decode_layer_attention, one new query per sequence against its cache (GQA groups share
 *   one pass over it), with QK-norm, RoPE and the cache write before it;
 * - sampling.c: argmax_rows and sample_rows (temperature, top_k, top_p, min_p, the inverse-CDF draw);
 * - gemm.c: pack_bf16_pairs and the AVX512-BF16 GEMM of many-row decode steps;
 * - prefill_attention.c: causal GQA attention of a prefill segment (FlashAttention-2 style);
 * - decode_step.c: decode_step, a whole decode step of a dense model in one call.
 */

#include "kernels/int8_matvec.c"
#include "kernels/elementwise.c"
#include "kernels/decode_attention.c"
#include "kernels/sampling.c"
#include "kernels/gemm.c"
#include "kernels/prefill_attention.c"
#include "kernels/decode_step.c"
