// Embedding example: build a small ReLU network with lipcert's C++ IR and compute its exact local
// Lipschitz constant on a box by branch and bound. Exits 0 when the certified bounds enclose the
// known value. With --gpu (where lipcert was installed with its CUDA kernels) the subdomains are bounded
// on the GPU; exit code 2 says that this build or this machine has none.
//
// f(x) = relu(x1 + x2) + relu(x1 - x2) on [-1, 1]^2 has the Jacobians (2, 0), (1, 1), (1, -1) and 0
// on its four activation regions, so its l2 -> l2 Lipschitz constant there is exactly 2.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "lipcert/bab.hpp"
#include "lipcert/network.hpp"
#ifdef LIPCERT_EXAMPLE_CUDA
#include "lipcert/cuda/power_iteration.hpp"
#include "lipcert/cuda/subdomain_bounds.hpp"
#endif

int main(int argc, char** argv) {
  using namespace lipcert;
  Eigen::MatrixXd w1(2, 2), w2(1, 2);
  w1 << 1, 1, 1, -1;
  w2 << 1, 1;
  const Network net(TensorShape{2, 1, 1, false},
                    {Layer::dense(w1, Eigen::VectorXd::Zero(2)), Layer::activation(LayerKind::ReLU),
                     Layer::dense(w2, Eigen::VectorXd::Zero(1))});
  BabOptions options;
  options.tol = 1e-9;
  if (argc > 1 && std::strcmp(argv[1], "--gpu") == 0) {
#ifdef LIPCERT_EXAMPLE_CUDA
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "no CUDA device\n");
      return 2;
    }
    options.bounder = std::make_shared<cuda::GpuSubdomainBounder>(net);
#else
    std::fprintf(stderr, "lipcert was installed without its CUDA kernels (lipcert::cuda)\n");
    return 2;
#endif
  }
  const BabResult r = lipschitz_bab(net, Eigen::VectorXd::Constant(2, -1.0), Eigen::VectorXd::Constant(2, 1.0),
                                    Norm::Two, Norm::Two, options, 0.0, Eigen::VectorXd::Zero(2));
  std::printf("{\"lower\": %.17g, \"upper\": %.17g, \"status\": \"%s\", \"nodes\": %ld}\n", r.lower, r.upper,
              r.status.c_str(), r.nodes);
  const bool ok = r.exact && r.lower <= 2.0 && r.upper >= 2.0 && std::abs(r.upper - 2.0) <= 1e-9;
  return ok ? 0 : 1;
}
