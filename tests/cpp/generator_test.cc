// End-to-end engine properties on a small random model: padding does not
// change a row's output, thread count does not change sampling, early stop
// pads, and bad input throws Error before any work.
#include <random>
#include <string>
#include <vector>

#include "../../csrc/core/error.h"
#include "../../csrc/core/generation_stream.h"
#include "../../csrc/core/generator.h"
#include "../../csrc/core/model.h"
#include "check.h"
#include "test_data.h"

using namespace fastergpt;

ModelConfig tiny_config() {
  ModelConfig config;
  config.num_layers = 2;
  config.num_heads = 2;
  config.hidden_size = 32;
  config.inner_size = 64;
  config.vocab_size = 41;
  config.max_positions = 32;
  return config;
}

struct TinyModel {
  ModelConfig config = tiny_config();
  fgpt_test::RandomWeights weights{config, WeightFormat::kF32, 9};
  std::unique_ptr<Model> model = make_model(config, WeightFormat::kF32, weights.views);
};

static GenerationResult run(const TinyModel& m, const std::vector<int64_t>& ids,
                            const std::vector<int64_t>& mask, int64_t B,
                            const GenerationOptions& o) {
  const int64_t L = B > 0 ? static_cast<int64_t>(ids.size()) / B : 0;
  GenerationInput in{ids.data(), mask.empty() ? nullptr : mask.data(), B, L};
  return generate(*m.model, in, o);
}

template <typename F>
static void expect_error(F f, const std::string& fragment) {
  try {
    f();
    std::fprintf(stderr, "expected an error mentioning '%s'\n", fragment.c_str());
    CHECK(false);
  } catch (const Error& e) {
    if (std::string(e.what()).find(fragment) == std::string::npos) {
      std::fprintf(stderr, "error '%s' does not mention '%s'\n", e.what(), fragment.c_str());
      CHECK(false);
    }
  }
}

// forward() keeping some rows: every token's K/V and the kept rows' hidden states are
// those of the full pass, bit for bit, in every residual layout; bad keep lists throw.
static void check_forward_keep() {
  for (Residual residual : {Residual::kSequential, Residual::kParallel,
                            Residual::kParallelTwoNorms, Residual::kPostNorm}) {
    ModelConfig c = tiny_config();
    c.residual = residual;
    c.num_layers = 3;
    fgpt_test::RandomWeights weights{c, WeightFormat::kF32, 4};
    std::unique_ptr<Model> model = make_model(c, WeightFormat::kF32, weights.views);
    // Two prompts in one pass: row 0 at slots 0..4, row 1 at slots 0..2.
    const std::vector<int64_t> tokens = {3, 9, 1, 30, 7, 12, 5, 40};
    const std::vector<TokenSlot> slots = {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4},
                                          {1, 0}, {1, 1}, {1, 2}};
    const int64_t M = 8, D = c.hidden_size, Dh = c.head_dim();
    auto pass = [&](Context& ctx, const std::vector<int64_t>* keep) {
      ctx.kv_cache().allocate(c, 2, 8);
      model->forward(ctx, tokens.data(), slots.data(), M, keep);
    };
    Context full(cpu_backend(), 2);
    pass(full, nullptr);
    const std::vector<std::vector<int64_t>> keeps = {{4, 7}, {7}, {0, 2, 3}, {}};
    for (const std::vector<int64_t>& keep : keeps) {
      Context kept(cpu_backend(), 2);
      pass(kept, &keep);
      for (size_t i = 0; i < keep.size(); ++i)
        for (int64_t d = 0; d < D; ++d)
          CHECK(kept.activations().x.data()[i * D + d] ==
                full.activations().x.data()[keep[i] * D + d]);
      for (int64_t l = 0; l < c.num_layers; ++l)
        for (const TokenSlot& s : slots)
          for (int64_t h = 0; h < c.kv_heads(); ++h)
            for (int64_t d = 0; d < Dh; ++d) {
              CHECK(kept.kv_cache().key(l, s.row, h, s.slot)[d] ==
                    full.kv_cache().key(l, s.row, h, s.slot)[d]);
              CHECK(kept.kv_cache().value(l, s.row, h, s.slot)[d] ==
                    full.kv_cache().value(l, s.row, h, s.slot)[d]);
            }
    }
    Context bad(cpu_backend(), 1);
    for (const std::vector<int64_t>& keep : std::vector<std::vector<int64_t>>{{3, 3}, {5, 2}, {8}})
      expect_error([&] { pass(bad, &keep); }, "the rows to keep must rise strictly");
  }
}

int main() {
  check_forward_keep();
  TinyModel m;
  GenerationOptions o;
  o.max_new_tokens = 6;
  // Row alone == row left-padded in a batch.
  const GenerationResult alone = run(m, {5, 6, 7}, {}, 1, o);
  const GenerationResult batch = run(m, {0, 0, 5, 6, 7, 1, 2, 3, 4, 5}, {0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, 2, o);
  CHECK(alone.steps == 6 && batch.steps == 6);
  for (int t = 0; t < 6; ++t) CHECK(alone.ids[t] == batch.ids[t]);

  // Sampling: same seed => same output at 1 and 2 threads; another seed differs.
  o.decode_strategy = DecodeStrategy::kSampling;
  o.max_new_tokens = 12;
  o.num_return_sequences = 3;
  o.seed = 42;
  o.num_threads = 1;
  const GenerationResult s1 = run(m, {1, 2, 3}, {}, 1, o);
  o.num_threads = 2;
  const GenerationResult s2 = run(m, {1, 2, 3}, {}, 1, o);
  CHECK(s1.ids == s2.ids);
  o.seed = 43;
  const GenerationResult s3 = run(m, {1, 2, 3}, {}, 1, o);
  CHECK(s1.ids != s3.ids);

  // Early stop: make the first greedy token the end token.
  o = GenerationOptions();
  o.max_new_tokens = 5;
  const GenerationResult g = run(m, {3, 4}, {}, 1, o);
  o.eos_token_id = g.ids[0];
  o.pad_token_id = 0;
  const GenerationResult e = run(m, {3, 4}, {}, 1, o);
  CHECK(e.steps == 1 && e.lengths[0] == 1 && e.ids[0] == g.ids[0]);

  // Bad input.
  o = GenerationOptions();
  expect_error([&] { run(m, {1, 99}, {}, 1, o); }, "input_ids");
  expect_error([&] { run(m, {1, 2}, {1, 0}, 1, o); }, "left-padded");
  expect_error([&] { run(m, {1, 2}, {0, 0}, 1, o); }, "no real token");
  o.max_new_tokens = 31;
  expect_error([&] { run(m, {1, 2}, {}, 1, o); }, "positions");
  o.max_new_tokens = 3;
  o.top_p = 0.0f;
  expect_error([&] { run(m, {1, 2}, {}, 1, o); }, "top_p");
  o.top_p = 1.0f;
  o.decode_strategy = DecodeStrategy::kSampling;
  o.temperature = 0.0f;
  expect_error([&] { run(m, {1, 2}, {}, 1, o); }, "temperature");
  expect_error([&] { run(m, {}, {}, 0, GenerationOptions()); }, "empty");

  // The settings table bounds every value before any cast or arithmetic.
  o = GenerationOptions();
  expect_error([&] { set_setting(o, "max_new_tokens", 9.3e18); }, "max_new_tokens must be <= 1073741824");
  expect_error([&] { set_setting(o, "num_return_sequences", 9.2e18); }, "num_return_sequences");
  expect_error([&] { set_setting(o, "seed", -1); }, "seed must be >= 0, got -1");
  expect_error([&] { set_setting(o, "top_k", 2.5); }, "top_k must be an integer");
  expect_error([&] { set_setting(o, "top_p", NAN); }, "top_p must be in (0, 1], got nan");
  expect_error([&] { set_setting(o, "decode_strategy", 7); }, "decode_strategy");
  expect_error([&] { set_setting(o, "no_such_setting", 1); }, "unknown generation setting");
  o.max_new_tokens = int64_t(1) << 62;  // filled field by field: validate() still bounds it
  expect_error([&] { run(m, {1, 2}, {}, 1, o); }, "max_new_tokens must be <= 1073741824");
  // A settings vector read by name, in any order (what an export's layout records).
  const GenerationOptions v =
      options_from_values({"seed", "decode_strategy"}, std::vector<double>{7, 1}.data(), 2);
  CHECK(v.seed == 7 && v.decode_strategy == DecodeStrategy::kSampling && v.max_new_tokens == 20);
  expect_error([&] { options_from_values({"seed"}, std::vector<double>{1, 2}.data(), 2); },
               "settings: expected 1 values");
  CHECK(parse_choice(setting_info("decode_strategy"), "greedy") == 0);
  expect_error([&] { parse_choice(setting_info("decode_strategy"), "beam"); }, "expected one of");
  {  // Step by step (stream and callback) gives generate()'s tokens; a callback can stop it.
    TinyModel m;
    const std::vector<int64_t> ids = {0, 3, 4, 5, 6, 7, 8, 9}, mask = {0, 1, 1, 1, 1, 1, 1, 1};
    GenerationOptions o;
    o.max_new_tokens = 7;
    o.decode_strategy = DecodeStrategy::kSampling;
    o.seed = 11;
    o.num_return_sequences = 2;
    o.eos_token_id = 1;
    const GenerationResult whole = run(m, ids, mask, 2, o);
    GenerationInput in{ids.data(), mask.data(), 2, 4};
    GenerationStream stream(*m.model, in, o);
    StepTokens step;
    int64_t t = 0;
    while (stream.next(&step)) {
      for (int64_t r = 0; r < whole.rows; ++r)
        CHECK(step.tokens[r] == (t < whole.lengths[r] ? whole.ids[r * whole.steps + t] : -1));
      ++t;
    }
    CHECK(t == whole.steps);
    CHECK(stream.result().ids == whole.ids);
    {  // A row finished by the caller leaves; the others keep their tokens.
      GenerationStream cut(*m.model, in, o);
      CHECK(cut.next(&step));
      cut.finish(0);
      int64_t t2 = 1;
      while (cut.next(&step)) {
        CHECK(step.tokens[0] == -1);
        for (int64_t r = 1; r < whole.rows; ++r)
          CHECK(step.tokens[r] == (t2 < whole.lengths[r] ? whole.ids[r * whole.steps + t2] : -1));
        ++t2;
      }
      CHECK(cut.result().lengths[0] == 1);
    }
    {  // Continuous batching: sequences join a running batch at different steps and
       // leave it; each gets what generate() gives its prompt alone (as row rng_row).
      GenerationStream batch(*m.model, 3, 32, GenerationOptions());
      struct Req { std::vector<int64_t> prompt; GenerationOptions o; int64_t rng_row; };
      GenerationOptions greedy;
      greedy.max_new_tokens = 9;
      GenerationOptions sampled = greedy;
      sampled.decode_strategy = DecodeStrategy::kSampling;
      sampled.seed = 5;
      sampled.max_new_tokens = 6;
      sampled.repetition_penalty = 1.3f;
      const std::vector<Req> reqs = {{{3, 4, 5}, greedy, 0}, {{7, 8}, sampled, 1},
                                     {{9, 10, 11, 12, 13}, greedy, 0}, {{6}, sampled, 0}};
      std::vector<std::vector<int64_t>> got(reqs.size());
      std::vector<int64_t> row_of(reqs.size(), -1);
      size_t next_req = 0;
      StepTokens st;
      for (int step = 0; step < 40; ++step) {
        // One joins every other step while a row is free.
        if (step % 2 == 0 && next_req < reqs.size() && batch.free_rows() > 0) {
          row_of[next_req] = batch.join(reqs[next_req].prompt, reqs[next_req].o, reqs[next_req].rng_row);
          ++next_req;
        }
        if (!batch.next(&st)) continue;
        for (size_t q = 0; q < reqs.size(); ++q) {
          const int64_t r = row_of[q];
          if (r < 0 || st.tokens[r] < 0) continue;
          got[q].push_back(st.tokens[r]);
          if (static_cast<int64_t>(got[q].size()) == reqs[q].o.max_new_tokens) {
            batch.release(r);  // done: its slot is free for the next request
            row_of[q] = -1;
          }
        }
      }
      CHECK(next_req == reqs.size());
      for (size_t q = 0; q < reqs.size(); ++q) {
        GenerationOptions o = reqs[q].o;
        o.num_return_sequences = reqs[q].rng_row + 1;  // row rng_row of a one-prompt call
        const GenerationResult alone = run(m, reqs[q].prompt, {}, 1, o);
        const int64_t row = reqs[q].rng_row;
        std::vector<int64_t> want(alone.ids.begin() + row * alone.steps,
                                  alone.ids.begin() + row * alone.steps + alone.lengths[row]);
        CHECK(got[q] == want);
      }
      expect_error([&] { batch.join({}, greedy); }, "at least one token");
      GenerationOptions too_long = greedy;
      too_long.max_new_tokens = 40;
      expect_error([&] { batch.join({1, 2}, too_long); }, "positions");
    }
    int64_t calls = 0;
    const GenerationResult stopped =
        generate(*m.model, in, o, [&](const StepTokens&) { return ++calls < 3; });
    CHECK(calls == 3 && stopped.steps == std::min<int64_t>(3, whole.steps));
    o.decode_strategy = DecodeStrategy::kBeamSearch;
    o.num_beams = 2;
    o.num_return_sequences = 1;
    expect_error([&] { GenerationStream s(*m.model, in, o); }, "streaming does not support beam search");
  }
  TEST_MAIN_END();
}
