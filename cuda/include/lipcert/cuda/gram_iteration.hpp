#pragma once
/// Certified spectral-norm upper bounds by Gram iteration on the GPU (float64), batched: dense layers
/// and the per-frequency transfer matrices of convolutions.
///
/// Gram iteration (Delattre et al., ICML 2023) squares the Gram matrix repeatedly: with Y_0 = A and
/// Y_{k+1} = Y_k^H Y_k, sigma_1(A)^(2^t) = sigma_1(Y_t) <= ||Y_t||_F, a bound that converges to
/// sigma_1(A) as t grows. Here every computed step carries its rounding error: fl(Y^H Y) = Y^H Y + E
/// with ||E||_2 <= gamma ||Y||_F^2 (any summation order, FMA or not), and each Y is rescaled by an
/// exact power of two, so sigma_1(Y_k)^2 <= 2^m_{k+1} sigma_1(Y_{k+1}) + ||E_k||_2 is unwound from
/// ||Y_t||_F back to a bound on sigma_1(A), rounding upward on the host. Iteration stops once the
/// bound improves by less than a relative 1e-13 or after max_iterations squarings.
#include <vector>

#include "lipcert/cuda/power_iteration.hpp"
#include "lipcert/layer.hpp"

namespace lipcert::cuda {

struct GramBound {
  double upper = 0.0;  ///< certified: >= ||A||_2
  int iterations = 0;  ///< squarings done
};

/// Certified ||A||_2 for each column-major matrix; matrices of one shape are squared together.
std::vector<GramBound> gram_spectral_upper(const std::vector<MatrixView>& matrices, int max_iterations = 24);

/// Certified spectral norm of a convolution through its circular embedding (the same bound as
/// lipcert::conv_circulant_spectral_bound): the transfer matrices of all frequencies are formed and
/// squared together on the GPU; the result includes the embedding's transfer_error.
GramBound conv_gram_spectral_upper(const Layer& conv, int max_iterations = 24);

}  // namespace lipcert::cuda
