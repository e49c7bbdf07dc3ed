#pragma once
/// Batched power iteration for dense layers on the GPU (float64). Same contract as the CPU
/// lipcert::power_iteration: the results are lower estimates of the spectral norms, never certified.
#include <vector>

namespace lipcert::cuda {

/// Number of usable CUDA devices; 0 when there is no driver or no GPU (never throws).
int device_count();

/// A column-major matrix owned by the caller.
struct MatrixView {
  const double* data;
  int rows;
  int cols;
};

/// Runs `iterations` steps of power iteration on A^T A for every matrix at once; returns ||A v|| for
/// the final unit vector v of each matrix. Throws std::runtime_error on a CUDA error.
std::vector<double> batched_power_iteration(const std::vector<MatrixView>& matrices, int iterations,
                                            unsigned long long seed);

}  // namespace lipcert::cuda
