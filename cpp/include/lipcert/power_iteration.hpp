#pragma once
/// Batched power iteration on A^T A for affine layers (matrix-free: convolutions are never unrolled).
#include <vector>

#include "lipcert/layer.hpp"

namespace lipcert {

struct PowerIterationResult {
  double sigma = 0.0;   ///< estimate of ||A||_2: a lower estimate, never a certified bound
  int iterations = 0;
  bool converged = false;
};

/// Runs power iteration on every layer in parallel (one thread per layer). Stops a layer when the
/// relative change of its estimate falls below tol.
std::vector<PowerIterationResult> power_iteration(const std::vector<const Layer*>& layers,
                                                  int max_iterations, double tol,
                                                  unsigned long long seed);

}  // namespace lipcert
