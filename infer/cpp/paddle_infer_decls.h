// Declarations of the part of the Paddle Inference C++ API that gpt_infer uses,
// for building against the pip wheel, which exports these symbols from
// paddle/base/libpaddle.so but ships no paddle_inference_api.h. Used ONLY when
// no official Paddle Inference library is given (-DPADDLE_INFERENCE_DIR);
// every function declared here is an exported, out-of-line symbol of
// paddlepaddle 3.3.1 (checked with `nm -D -C libpaddle.so`).
//
// Layout independence: AnalysisConfig gets storage far larger than the real
// object and is only touched through exported members; paddle_infer::Tensor is
// never constructed, copied or destroyed by our code (gpt_infer keeps the
// handles it gets for the whole run), so neither class's real layout matters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paddle {
class PaddlePredictor;

class AnalysisConfig {
 public:
  AnalysisConfig(const std::string& prog_file, const std::string& params_file);
  ~AnalysisConfig();
  void DisableGpu();
  void SwitchIrOptim(int x = true);
  void DisableGlogInfo();
  void SetCpuMathLibraryNumThreads(int n);
  void EnableNewIR(bool enable = true);

 private:
  alignas(64) unsigned char storage_[1 << 16];  // the real object is a few KiB
};
}  // namespace paddle

namespace paddle_infer {
using Config = paddle::AnalysisConfig;

class Tensor {
 public:
  Tensor() = delete;
  void Reshape(const std::vector<int>& shape);
  template <typename T>
  void CopyFromCpu(const T* data);
  template <typename T>
  void CopyToCpu(T* data) const;
  std::vector<int> shape() const;
};

class Predictor {
 public:
  Predictor() = delete;
  std::vector<std::string> GetInputNames();
  std::unique_ptr<Tensor> GetInputHandle(const std::string& name);
  bool Run();
  std::vector<std::string> GetOutputNames();
  std::unique_ptr<Tensor> GetOutputHandle(const std::string& name);
};

std::shared_ptr<Predictor> CreatePredictor(const Config& config);
std::string GetVersion();
}  // namespace paddle_infer
