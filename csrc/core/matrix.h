// Weight formats and the read-only view of a packed weight matrix.
//
// A linear layer's W is [N, K] (out rows, in columns), stored as its kernels read it:
// in blocks of 16 output rows, a column (or 4 or 8 columns) of the 16 rows side by side,
// so one vector load holds weights of 16 outputs, the sums accumulate in vector lanes
// with no horizontal reduction per row, and W streams strictly in order. Decoding at
// small batch reads every weight once per token, so the format decides the speed. Each format is ONE row of
// kWeightFormats: how it is stored, its scales and how its kernels take their
// activations; the per-ISA kernels of a format sit in the CPU kernel table
// under the same index (csrc/cpu/simd_kernels.h), Python's pack/unpack in
// fastergpt/quantize.py under the same name, and everything else (the CLIs'
// choices, the checks) reads this list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fastergpt {

// How one tensor element is stored (what an adapter's tensor dtype must be).
// (bfloat16: the upper half of a float32; NumPy holds it as uint16. int32: indices, the
// column order of an act-order matrix.)
enum class ElementType { kF32, kF16, kI8, kBF16, kI32 };
const char* element_name(ElementType t);  // "float32", "float16", "int8", "bfloat16", "int32"
int64_t element_bytes(ElementType t);     // 4, 2, 1, 2, 4

enum class WeightFormat { kF32, kF16, kI8, kI4, kBF16 };
constexpr int kNumWeightFormats = 5;

enum class ScaleLayout {
  kNone,    // the stored values are the weights
  kPerRow,  // a float32 [N] tensor "<matrix>.scale" follows the matrix: W[n, :] ~= s[n] * q[n, :]
  // A float16 tensor "<matrix>.scale" [ceil(N/16), groups * 32] follows the matrix: per block
  // of 16 rows and group of G columns, 16 scales then 16 zero points,
  // W[n, k] ~= s[n, k/G] * (q[n, k] - z[n, k/G]). The group count is the tensor's; G is the
  // power of two (>= 8) that gives it (q4_group_size), so one format serves every group size.
  kPerGroup,
};

// An act-order checkpoint (GPTQ's desc_act) groups a matrix's input columns in the order it
// quantized them, not k // G. A per-group format keeps such a matrix with its columns
// stored group after group and, after its scales, an int32 [K] tensor "<matrix>.columns":
// stored column k multiplies input x[columns[k]]. The kernels are the plain ones; the
// activations' int8 quantisation reads x in that order (K gathered floats a token row,
// next to K/2 bytes of weights per output row).
// The model's `act_order` architecture field says its layer matrices carry one.

// What a format's kernels multiply the weights with.
enum class ActivationInput {
  kFloat,      // float32 activations, fp32 FMA
  kInt8Rows,   // activations quantised to int8 per row first, exact int32 dot products
  kInt8Groups, // the same int8 rows (zero-padded to the packing), exact int32 sums per group
};

// How a format lays out its matrix.
enum class StorageLayout {
  kFloatBlocks16,    // float32 / float16: [ceil(N/16), 16 * K] elements; per block of 16 rows,
                     // column after column, element 16k + r = W[r, k] (fastergpt/quantize.py
                     // writes it): output rows sit in vector lanes
  kByteBlocks16,     // int8: [ceil(N/16), 16 * Kp] bytes, Kp = K rounded up to 4; per block
                     // of 16 rows and step of 4 columns 64 bytes, byte 4r + c = q[r, 4s + c]
                     // (fastergpt/quantize.py writes it): output rows sit in vector lanes
  kNibbleBlocks16,   // 4-bit: [ceil(N/16), 8 * Kp] bytes, Kp = K rounded up to 8; per block
                     // of 16 rows and step of 8 columns 64 bytes, byte 4r + c = q[r, 8s + c]
                     // | q[r, 8s + 4 + c] << 4 (fastergpt/int4.py writes it)
  kPairBlocks16,     // bfloat16: [ceil(N/16), 16 * Kp] elements, Kp = K rounded up to 2; per
                     // block of 16 rows and pair of columns 64 bytes, element 32s + 2r + c =
                     // W[r, 2s + c] (fastergpt/quantize.py writes it): each 32-bit lane holds
                     // one row's two weights, as vdpbf16ps takes them
};

struct WeightFormatInfo {
  WeightFormat format;
  const char* name;          // as adapters, config files and CLIs spell it
  const char* alias;         // a second accepted spelling, or ""
  ElementType element;       // storage of the matrix
  int bits;                  // bits per stored weight
  ScaleLayout scales;
  ActivationInput activations;
  StorageLayout layout;
  // The format of the vocabulary matrices (token table, LM head). Every logit depends on
  // them, so int4 keeps them in int8, as GPTQ checkpoints keep them in float16 and
  // llama.cpp's q4 models keep their output matrix at 6 bits.
  WeightFormat vocabulary;
  // The token table's format when this is the vocabulary's: a step reads one row of the
  // table per token, so 4 bits there would only cost precision (the default model in int4
  // with an int4 LM head, rounded to nearest: held-out perplexity 76.616 with an int4
  // table, 76.088 with an int8 one, 75.223 in float32); an int4 vocabulary keeps its table
  // in int8, and a tied LM head then becomes a matrix of its own
  // (ModelConfig::separate_lm_head).
  WeightFormat token_table;
  const char* description;
};

constexpr WeightFormatInfo kWeightFormats[kNumWeightFormats] = {
    {WeightFormat::kF32, "float32", "fp32", ElementType::kF32, 32, ScaleLayout::kNone,
     ActivationInput::kFloat, StorageLayout::kFloatBlocks16, WeightFormat::kF32,
     WeightFormat::kF32, "float32 weights, 16 rows interleaved"},
    {WeightFormat::kF16, "float16", "fp16", ElementType::kF16, 16, ScaleLayout::kNone,
     ActivationInput::kFloat, StorageLayout::kFloatBlocks16, WeightFormat::kF16,
     WeightFormat::kF16,
     "IEEE half weights, 16 rows interleaved, converted in registers; fp32 accumulation"},
    {WeightFormat::kI8, "int8", "", ElementType::kI8, 8, ScaleLayout::kPerRow,
     ActivationInput::kInt8Rows, StorageLayout::kByteBlocks16, WeightFormat::kI8,
     WeightFormat::kI8,
     "symmetric int8 weights with a float32 scale per output row, 16 rows interleaved; int8 "
     "activations per row, exact int32 sums (VNNI where the CPU has it)"},
    {WeightFormat::kI4, "int4", "q4", ElementType::kI8, 4, ScaleLayout::kPerGroup,
     ActivationInput::kInt8Groups, StorageLayout::kNibbleBlocks16, WeightFormat::kI8,
     WeightFormat::kI8,
     "4-bit weights (GPTQ's convention), a float16 scale and zero point per group of input "
     "columns, 16 rows interleaved; int8 activations per row, exact int32 sums per group; "
     "token table and LM head in int8 (an int4 LM head keeps an int8 token table)"},
    {WeightFormat::kBF16, "bfloat16", "bf16", ElementType::kBF16, 16, ScaleLayout::kNone,
     ActivationInput::kFloat, StorageLayout::kPairBlocks16, WeightFormat::kBF16,
     WeightFormat::kBF16,
     "bfloat16 weights (a bfloat16 checkpoint's exactly), 16 rows x 2 columns interleaved, "
     "widened exactly in registers; fp32 accumulation (vdpbf16ps under "
     "matmul_precision=bfloat16)"},
};

// The int4 packing (StorageLayout::kNibbleBlocks16) and the int8 one (kByteBlocks16): both
// keep 16 output rows together, so one 64-byte load feeds one vpdpbusd into 16 outputs.
constexpr int64_t kQ4BlockRows = 16;
inline int64_t q4_blocks(int64_t rows) { return (rows + kQ4BlockRows - 1) / kQ4BlockRows; }
inline int64_t q4_padded_cols(int64_t cols) { return (cols + 7) / 8 * 8; }
inline int64_t q8_padded_cols(int64_t cols) { return (cols + 3) / 4 * 4; }
inline int64_t bf16_padded_cols(int64_t cols) { return (cols + 1) / 2 * 2; }
// 32-bit words of a row of `cols` values as bfloat16 pairs (the last one padded with 0).
inline int64_t bf16_pair_words(int64_t cols) { return (cols + 1) / 2; }
// Columns per group for `groups` groups over `cols` columns: the least power of two >= 8
// that covers them (one group: any size that covers the row).
int64_t q4_group_size(int64_t cols, int64_t groups);

// Row-major out[rows, cols] from kFloatBlocks16 storage (per block of 16 rows, element
// 16k + r = W[r, k]): for a device whose kernels read plain rows (cuBLAS).
template <class T>
void unpack_float_blocks16(const T* packed, int64_t rows, int64_t cols, T* out) {
  for (int64_t n = 0; n < rows; ++n) {
    const T* block = packed + (n / 16) * 16 * cols;
    for (int64_t k = 0; k < cols; ++k) out[n * cols + k] = block[16 * k + n % 16];
  }
}

// The shape the format stores an [rows, cols] matrix in.
std::vector<int64_t> storage_shape(WeightFormat f, int64_t rows, int64_t cols);

const WeightFormatInfo& format_info(WeightFormat f);
// A format by name or alias; throws Error naming the value and the known names.
WeightFormat parse_weight_format(const std::string& name);

struct Matrix {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;     // the format's storage (storage_shape)
  const float* scales = nullptr;  // [rows] for ScaleLayout::kPerRow, else null
  const uint16_t* group_params = nullptr;  // ScaleLayout::kPerGroup: float16, see there
  int64_t groups = 0;             // ScaleLayout::kPerGroup: groups per row
  int64_t group_size = 0;         // ScaleLayout::kPerGroup: columns per group
  const int32_t* columns = nullptr;  // kPerGroup, act-order: input column of stored column k
  int64_t rows = 0;               // N (outputs)
  int64_t cols = 0;               // K (inputs)
};

}  // namespace fastergpt
