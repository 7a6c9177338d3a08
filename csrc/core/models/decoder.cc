// The one decoder of every family: a ModelConfig (architecture as data) says
// which norm, positions, MLP, residual layout, heads and biases a model has;
// this file's tensor table says which weights that needs, and one forward
// pass composes the backend's ops accordingly. No copy per family.
#include "decoder.h"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "../error.h"
#include "../op_profile.h"

namespace fastergpt {
namespace {

// Named weights of one block. Shapes: D hidden, F inner, Dh head size, H and
// K query and KV heads; linear weights are [out, in].
struct LayerWeights {
  const float* ln1_gamma;      // [D]
  const float* ln1_beta;       // [D] (LayerNorm)
  Matrix qkv;                  // [(H + 2K) * Dh, D]: rows q heads | k heads | v heads
  const float* qkv_bias;       // [(H + 2K) * Dh] (qkv_bias)
  Matrix attn_out;             // [D, H * Dh]
  const float* attn_out_bias;  // [D] (out_bias)
  const float* ln2_gamma;      // [D] (not with the parallel shared-norm layout)
  const float* ln2_beta;       // [D]
  Matrix fc;                   // [F, D], or [2F, D] = gate | up for a gated MLP
  const float* fc_bias;        // (mlp_bias)
  Matrix proj;                 // [D, F]
  const float* proj_bias;      // [D] (mlp_bias)
};

// THE table of a block's tensors: spec order, keys, shapes, when a model has
// them and where each binds. Python's checkpoint mapping (fastergpt/models/)
// uses the keys.
enum Dim { k1, kD, kQKV, kQ, kF, kF2 };
using Has = bool (*)(const ModelConfig&);
struct LayerTensor {
  const char* key;
  Dim rows, cols;  // cols = k1: a vector of `rows` floats
  Has present;
  const float* LayerWeights::*vector;  // float32 vectors
  Matrix LayerWeights::*matrix;        // matrices in the weight format
};
bool always(const ModelConfig&) { return true; }
bool has_norm_bias(const ModelConfig& c) { return c.norm == Norm::kLayerNorm; }
bool second_norm(const ModelConfig& c) { return c.residual != Residual::kParallel; }
bool second_norm_bias(const ModelConfig& c) { return second_norm(c) && has_norm_bias(c); }
bool has_qkv_bias(const ModelConfig& c) { return c.qkv_bias; }
bool has_out_bias(const ModelConfig& c) { return c.out_bias; }
bool has_mlp_bias(const ModelConfig& c) { return c.mlp_bias; }

const LayerTensor kLayerTensors[] = {
    {"ln1.gamma", kD, k1, always, &LayerWeights::ln1_gamma, nullptr},
    {"ln1.beta", kD, k1, has_norm_bias, &LayerWeights::ln1_beta, nullptr},
    {"qkv.weight", kQKV, kD, always, nullptr, &LayerWeights::qkv},
    {"qkv.bias", kQKV, k1, has_qkv_bias, &LayerWeights::qkv_bias, nullptr},
    {"attn_out.weight", kD, kQ, always, nullptr, &LayerWeights::attn_out},
    {"attn_out.bias", kD, k1, has_out_bias, &LayerWeights::attn_out_bias, nullptr},
    {"ln2.gamma", kD, k1, second_norm, &LayerWeights::ln2_gamma, nullptr},
    {"ln2.beta", kD, k1, second_norm_bias, &LayerWeights::ln2_beta, nullptr},
    {"fc.weight", kF2, kD, always, nullptr, &LayerWeights::fc},
    {"fc.bias", kF2, k1, has_mlp_bias, &LayerWeights::fc_bias, nullptr},
    {"proj.weight", kD, kF, always, nullptr, &LayerWeights::proj},
    {"proj.bias", kD, k1, has_mlp_bias, &LayerWeights::proj_bias, nullptr},
};

int64_t size_of(Dim d, const ModelConfig& c) {
  switch (d) {
    case k1: return 1;
    case kD: return c.hidden_size;
    case kQKV: return c.qkv_size();
    case kQ: return c.q_size();
    case kF: return c.inner_size;
    case kF2: return c.inner_size * (c.gated_mlp ? 2 : 1);
  }
  return 0;
}

// cos/sin [P, rotary_dim / 2] of position p's angles p * inv_freq[i], in float32
// as transformers computes them (so near-ties break the same way).
void rotary_angles(const ModelConfig& c, std::vector<float>* cos, std::vector<float>* sin) {
  const int64_t dim = c.rotary_dims(), half = dim / 2, P = c.max_positions;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i)
    inv[i] = 1.0f / std::pow(c.rotary_base, static_cast<float>(2 * i) / static_cast<float>(dim));
  if (c.rope_scaling == RopeScaling::kLinear) {
    for (float& f : inv) f /= c.rope_factor;
  } else if (c.rope_scaling == RopeScaling::kLlama3) {
    const float old = static_cast<float>(c.rope_original_max_positions);
    const float low_wavelen = old / c.rope_low_freq_factor;
    const float high_wavelen = old / c.rope_high_freq_factor;
    for (float& f : inv) {
      const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
      const float scaled = wavelen > low_wavelen ? f / c.rope_factor : f;
      const float smooth = (old / wavelen - c.rope_low_freq_factor) /
                           (c.rope_high_freq_factor - c.rope_low_freq_factor);
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      f = medium ? (1.0f - smooth) * scaled / c.rope_factor + smooth * scaled : scaled;
    }
  }
  cos->resize(P * half);
  sin->resize(P * half);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv[i];
      (*cos)[p * half + i] = std::cos(angle);
      (*sin)[p * half + i] = std::sin(angle);
    }
}

// The angle tables of a rotary configuration, computed once per process and
// shared: the Paddle op builds its model per call, and a long context (131072
// positions) makes the table millions of sin/cos.
struct RotaryAngles {
  std::vector<float> cos, sin;
};
std::shared_ptr<const RotaryAngles> shared_rotary_angles(const ModelConfig& c) {
  std::ostringstream key;
  key << std::setprecision(9) << c.rotary_dims() << ';' << c.rotary_base << ';'
      << static_cast<int>(c.rope_scaling) << ';' << c.rope_factor << ';' << c.rope_low_freq_factor
      << ';' << c.rope_high_freq_factor << ';' << c.rope_original_max_positions << ';'
      << c.max_positions;
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const RotaryAngles>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[key.str()];
  if (!slot) {
    auto angles = std::make_shared<RotaryAngles>();
    rotary_angles(c, &angles->cos, &angles->sin);
    slot = angles;
  }
  return slot;
}

class Decoder final : public Model {
 public:
  Decoder(const ModelConfig& c, WeightFormat format, const std::vector<WeightView>& views,
          const Backend& backend)
      : Model(c, backend) {
    const BoundWeights w(decoder_weight_spec(c, format), views);
    // The weights' host memory first: the CPU asks for 2 MB pages (csrc/cpu/huge_pages.h).
    std::vector<HostBytes> host;
    for (const WeightView& v : views) {
      int64_t n = element_bytes(v.dtype);
      for (int64_t d : v.shape) n *= d;
      host.push_back({v.data, n});
    }
    backend.place_weights(host);
    // Every weight goes through the backend once: the CPU reads the views in place, a
    // device with memory of its own gets its copy (kept in device_weights_).
    const auto matrix = [&](const std::string& name) {
      return backend.bind_matrix(w.matrix(name), &device_weights_);
    };
    const auto vector = [&](const std::string& name, int64_t n) {
      return backend.bind_vector(w.f32(name), n, &device_weights_);
    };
    const int64_t D = c.hidden_size;
    token_embedding_ = matrix("token_embedding");
    if (c.positions == Positions::kLearned)
      position_embedding_ = vector("position_embedding", c.max_positions * D);
    if (c.embed_dim() != c.hidden_size) {
      project_in_ = matrix("project_in.weight");
      project_out_ = matrix("project_out.weight");
    }
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      LayerWeights lw{};
      for (const LayerTensor& t : kLayerTensors) {
        if (!t.present(c)) continue;
        if (t.matrix) lw.*t.matrix = matrix(p + t.key);
        else lw.*t.vector = vector(p + t.key, size_of(t.rows, c));
      }
      layers_.push_back(lw);
    }
    if (c.residual != Residual::kPostNorm) {
      lnf_gamma_ = vector("final_ln.gamma", D);
      if (c.norm == Norm::kLayerNorm) lnf_beta_ = vector("final_ln.beta", D);
    }
    lm_head_ = c.separate_lm_head(format) ? matrix("lm_head.weight") : token_embedding_;
    if (c.lm_head_bias) lm_head_bias_ = vector("lm_head.bias", c.vocab_size);
    if (c.positions == Positions::kRotary) {
      angles_ = shared_rotary_angles(c);
      const int64_t n = static_cast<int64_t>(angles_->cos.size());
      rotary_ = {backend.bind_vector(angles_->cos.data(), n, &device_weights_),
                 backend.bind_vector(angles_->sin.data(), n, &device_weights_),
                 c.rotary_dims() / 2, c.rotary_interleaved};
    }
  }

  void forward(Context& ctx, const int64_t* tokens, const TokenSlot* slots, int64_t M,
               const std::vector<int64_t>* keep) const override {
    const ModelConfig& c = config_;
    const Backend& k = ctx.backend();
    Activations& a = ctx.activations();
    a.reserve(M, c);
    if (collective_) a.reserve_partial(M, c);
    float* x = a.x.data();
    if (project_in_.data) {  // embed at width E, project to D
      OpTimer t("embed", M);
      k.embed(ctx, token_embedding_, nullptr, tokens, slots, M, a.h.data());
      k.linear(ctx, a.h.data(), M, project_in_, nullptr, Epilogue::kStore, x);
      if (position_embedding_) k.add_positions(ctx, position_embedding_, slots, M, c.hidden_size, x);
    } else {
      OpTimer t("embed", M);
      k.embed(ctx, token_embedding_, position_embedding_, tokens, slots, M, x);
    }
    if (keep) {
      for (size_t i = 0; i < keep->size(); ++i)
        FGPT_CHECK((*keep)[i] >= (i ? (*keep)[i - 1] + 1 : 0) && (*keep)[i] < M,
                   "forward: the rows to keep must rise strictly within the pass of ", M);
      if (static_cast<int64_t>(keep->size()) == M) keep = nullptr;  // every row
    }
    // The last layer of a pass that keeps some rows runs on those rows alone after its
    // K/V (see attention()), at the slots of kept_slots.
    std::vector<TokenSlot> kept_slots;
    for (int64_t l = 0; l < c.num_layers; ++l)
      block(ctx, layers_[l], l, slots, M, l + 1 == c.num_layers ? keep : nullptr, kept_slots);
  }

  void logits(Context& ctx, int64_t n) const override {
    const ModelConfig& c = config_;
    const Backend& k = ctx.backend();
    Activations& a = ctx.activations();
    a.reserve_logits(n, c);
    const float* h = a.x.data();
    if (lnf_gamma_) {
      norm(ctx, a.x.data(), n, lnf_gamma_, lnf_beta_, a.h.data());
      h = a.h.data();
    }
    OpTimer t("lm_head", n);
    if (project_out_.data) {
      k.linear(ctx, h, n, project_out_, nullptr, Epilogue::kStore, a.h2.data());
      h = a.h2.data();
    }
    if (k.host_memory) {
      k.linear(ctx, h, n, lm_head_, lm_head_bias_, Epilogue::kStore, a.logits.data());
      return;
    }
    // The logits processors and samplers read them on the host.
    a.device_logits.grow(n * c.vocab_size);
    k.linear(ctx, h, n, lm_head_, lm_head_bias_, Epilogue::kStore, a.device_logits.data());
    k.copy(a.logits.data(), a.device_logits.data(), n * c.vocab_size * sizeof(float),
           CopyKind::kDeviceToHost);
  }

 private:
  void norm(Context& ctx, const float* x, int64_t M, const float* gamma, const float* beta,
            float* y) const {
    const ModelConfig& c = config_;
    OpTimer t("norm", M);
    if (c.norm == Norm::kRmsNorm)
      ctx.backend().rms_norm(ctx, x, M, c.hidden_size, gamma, c.norm_epsilon, y);
    else
      ctx.backend().layer_norm(ctx, x, M, c.hidden_size, gamma, beta, c.norm_epsilon, y);
  }

  // x += attention(in) (on a shard: see project_out). Returns the rows that go on: M,
  // or with `keep` (the pass's last layer, see forward()) the kept rows alone, which it
  // moves to the front of x, of the qkv rows and of the norm outputs the MLP reads
  // next, after every row's K/V are stored; their slots go to kept_slots.
  int64_t attention(Context& ctx, const LayerWeights& lw, int64_t l, const float* in,
                    const TokenSlot* slots, int64_t M, bool first,
                    const std::vector<int64_t>* keep, std::vector<TokenSlot>& kept_slots) const {
    const ModelConfig& c = config_;
    const Backend& k = ctx.backend();
    Activations& a = ctx.activations();
    {
      OpTimer t("qkv", M);
      k.linear(ctx, in, M, lw.qkv, lw.qkv_bias, Epilogue::kStore, a.qkv.data());
    }
    if (c.positions == Positions::kRotary) {
      OpTimer t("rotary", M);
      k.rotary(ctx, a.qkv.data(), slots, M, c.num_heads, c.kv_heads(), c.head_dim(), rotary_);
    }
    if (keep) {
      {
        OpTimer t("store_kv", M);
        k.store_kv(ctx, ctx.kv_cache(), l, c.num_heads, a.qkv.data(), slots, M);
      }
      const int64_t n = static_cast<int64_t>(keep->size()), D = c.hidden_size;
      kept_slots.resize(n);
      for (int64_t i = 0; i < n; ++i) kept_slots[i] = slots[(*keep)[i]];
      // (The rows rise strictly: a row moves down onto one already read, or stays.)
      auto gather = [&](float* p, int64_t width) {
        for (int64_t i = 0; i < n; ++i)
          if ((*keep)[i] != i)
            k.copy(p + i * width, p + (*keep)[i] * width, width * sizeof(float),
                   CopyKind::kDeviceToDevice);
      };
      gather(a.qkv.data(), c.qkv_size());
      gather(a.x.data(), D);
      if (c.residual == Residual::kParallel) gather(a.h.data(), D);
      if (c.residual == Residual::kParallelTwoNorms) gather(a.h2.data(), D);
      M = n;
      slots = kept_slots.data();
      if (M == 0) return 0;
    }
    {
      OpTimer t("attention", M);
      k.attention(ctx, ctx.kv_cache(), l, c.num_heads, a.qkv.data(), slots, M, a.attn.data());
    }
    OpTimer t("attn_out", M);
    project_out(ctx, a.attn.data(), M, lw.attn_out, lw.attn_out_bias, first);
    return M;
  }

  // x += mlp(in) (on a shard: see project_out).
  void mlp(Context& ctx, const LayerWeights& lw, const float* in, int64_t M, bool first) const {
    const ModelConfig& c = config_;
    const Backend& k = ctx.backend();
    Activations& a = ctx.activations();
    if (c.gated_mlp) {
      {
        OpTimer t("fc", M);
        k.linear(ctx, in, M, lw.fc, lw.fc_bias, Epilogue::kStore, a.mlp.data());
      }
      {
        OpTimer t("glu", M);
        k.glu(ctx, a.mlp.data(), M, c.inner_size, c.activation, a.gated.data());
      }
      OpTimer t("proj", M);
      project_out(ctx, a.gated.data(), M, lw.proj, lw.proj_bias, first);
    } else {
      {
        OpTimer t("fc", M);
        k.linear(ctx, in, M, lw.fc, lw.fc_bias, activation_epilogue(c.activation), a.mlp.data());
      }
      OpTimer t("proj", M);
      project_out(ctx, a.mlp.data(), M, lw.proj, lw.proj_bias, first);
    }
  }

  // A sublayer's output projection y = in W^T + b, added to the residual stream x.
  // A tensor-parallel shard holds its heads' (its MLP columns') share of W's inputs, so
  // its y is a partial sum: it goes to act.partial (the bias on rank 0 only, so that it
  // is added once; `first`: the first sublayer since the last reduce_into_x), and
  // reduce_into_x adds the sum over the shards to x.
  void project_out(Context& ctx, const float* in, int64_t M, const Matrix& W, const float* bias,
                   bool first) const {
    Activations& a = ctx.activations();
    if (!collective_) {
      ctx.backend().linear(ctx, in, M, W, bias, Epilogue::kAccumulate, a.x.data());
      return;
    }
    ctx.backend().linear(ctx, in, M, W, collective_->rank() == 0 ? bias : nullptr,
                         first ? Epilogue::kStore : Epilogue::kAccumulate, a.partial.data());
  }

  // x += the sum over the shards of act.partial: one all-reduce per sublayer (per
  // block with a parallel residual, whose two sublayers share it).
  void reduce_into_x(Context& ctx, int64_t M) const {
    if (!collective_) return;
    OpTimer t("all_reduce", M);
    Activations& a = ctx.activations();
    const int64_t n = M * config_.hidden_size;
    float* p = a.partial.data();
    collective_->all_reduce_sum(p, n);  // host memory: set_collective checks the backend
    ctx.backend().add(ctx, p, n, a.x.data());
  }

  // `keep`: see forward(); from the attention on, the layer runs on the kept rows.
  void block(Context& ctx, const LayerWeights& lw, int64_t l, const TokenSlot* slots, int64_t M,
             const std::vector<int64_t>* keep, std::vector<TokenSlot>& kept_slots) const {
    Activations& a = ctx.activations();
    float* x = a.x.data();
    float* h = a.h.data();
    const size_t row_bytes = config_.hidden_size * sizeof(float);
    switch (config_.residual) {
      case Residual::kSequential:
        norm(ctx, x, M, lw.ln1_gamma, lw.ln1_beta, h);
        M = attention(ctx, lw, l, h, slots, M, true, keep, kept_slots);
        if (M == 0) return;
        reduce_into_x(ctx, M);
        norm(ctx, x, M, lw.ln2_gamma, lw.ln2_beta, h);
        mlp(ctx, lw, h, M, true);
        reduce_into_x(ctx, M);
        break;
      case Residual::kParallel:  // one norm feeds both; both add to the old x
        norm(ctx, x, M, lw.ln1_gamma, lw.ln1_beta, h);
        M = attention(ctx, lw, l, h, slots, M, true, keep, kept_slots);
        if (M == 0) return;
        mlp(ctx, lw, h, M, false);
        reduce_into_x(ctx, M);
        break;
      case Residual::kParallelTwoNorms:  // both norms read the old x
        norm(ctx, x, M, lw.ln1_gamma, lw.ln1_beta, h);
        norm(ctx, x, M, lw.ln2_gamma, lw.ln2_beta, a.h2.data());
        M = attention(ctx, lw, l, h, slots, M, true, keep, kept_slots);
        if (M == 0) return;
        mlp(ctx, lw, a.h2.data(), M, false);
        reduce_into_x(ctx, M);
        break;
      case Residual::kPostNorm:  // the sublayers read x; the norms follow the adds
        ctx.backend().copy(h, x, M * row_bytes, CopyKind::kDeviceToDevice);
        M = attention(ctx, lw, l, h, slots, M, true, keep, kept_slots);
        if (M == 0) return;
        reduce_into_x(ctx, M);
        norm(ctx, x, M, lw.ln1_gamma, lw.ln1_beta, x);
        ctx.backend().copy(h, x, M * row_bytes, CopyKind::kDeviceToDevice);
        mlp(ctx, lw, h, M, true);
        reduce_into_x(ctx, M);
        norm(ctx, x, M, lw.ln2_gamma, lw.ln2_beta, x);
        break;
    }
  }

  Matrix token_embedding_;                     // [V, E]
  const float* position_embedding_ = nullptr;  // [P, D] (learned positions)
  Matrix project_in_, project_out_;            // [D, E], [E, D] when E != D
  std::vector<LayerWeights> layers_;           // num_layers
  const float* lnf_gamma_ = nullptr;           // [D] (not with post-norm)
  const float* lnf_beta_ = nullptr;            // [D] (LayerNorm)
  Matrix lm_head_;                             // [V, E]; the token embedding when tied
  const float* lm_head_bias_ = nullptr;        // [V]
  std::shared_ptr<const RotaryAngles> angles_;  // rotary tables [P, rotary_dim / 2]
  RotaryTable rotary_;                          // angles_, on the model's device
  std::vector<DeviceBlock> device_weights_;     // a device's copies of the weights
};

}  // namespace

std::vector<WeightSpec> decoder_weight_spec(const ModelConfig& c, WeightFormat format) {
  const int64_t D = c.hidden_size, E = c.embed_dim();
  const WeightFormat vocabulary = c.vocabulary(format);
  std::vector<WeightSpec> spec;
  add_matrix(spec, -1, "token_embedding", c.vocab_size, E, c.token_table(format));
  if (c.positions == Positions::kLearned)
    add_vector(spec, -1, "position_embedding", {c.max_positions, D});
  // Act-order orders the columns of the matrices a GPTQ checkpoint quantizes: the layers'
  // (and OPT's projections); the vocabulary matrices are never act-order.
  const bool order = c.act_order;
  if (E != D) add_matrix(spec, -1, "project_in.weight", D, E, format, order);
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (const LayerTensor& t : kLayerTensors) {
      if (!t.present(c)) continue;
      if (t.matrix)
        add_matrix(spec, l, t.key, size_of(t.rows, c), size_of(t.cols, c), format, order);
      else add_vector(spec, l, t.key, {size_of(t.rows, c)});
    }
  if (c.residual != Residual::kPostNorm) {
    add_vector(spec, -1, "final_ln.gamma", {D});
    if (c.norm == Norm::kLayerNorm) add_vector(spec, -1, "final_ln.beta", {D});
  }
  if (E != D) add_matrix(spec, -1, "project_out.weight", E, D, format, order);
  if (c.separate_lm_head(format))
    add_matrix(spec, -1, "lm_head.weight", c.vocab_size, E, vocabulary);
  if (c.lm_head_bias) add_vector(spec, -1, "lm_head.bias", {c.vocab_size});
  return spec;
}

std::unique_ptr<Model> make_decoder(const ModelConfig& config, WeightFormat format,
                                    const std::vector<WeightView>& views, const Backend& backend) {
  return std::make_unique<Decoder>(config, format, views, backend);
}

}  // namespace fastergpt
