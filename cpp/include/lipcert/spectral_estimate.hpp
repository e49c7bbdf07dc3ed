#pragma once
/// Matrix-free estimates of layer spectral norms (convolutions are never unrolled), batched over
/// layers. These are lower estimates that guide the certified bounds of spectral_norm.hpp; they are
/// never reported as certified.
#include <vector>

#include "lipcert/layer.hpp"

namespace lipcert {

struct SpectralEstimate {
  double sigma = 0.0;  ///< estimate of ||A||_2 from below (a Ritz value)
  int iterations = 0;  ///< Krylov steps (products with A and A^T)
  bool converged = false;
};

/// Golub-Kahan-Lanczos bidiagonalisation with full reorthogonalisation, i.e. power iteration on
/// A^T A accelerated by keeping its whole Krylov space: sigma is the largest singular value of the
/// projected bidiagonal matrix, which never exceeds ||A||_2 in exact arithmetic. One thread per
/// layer; stops a layer when sigma changes by less than tol (relative) over two steps.
std::vector<SpectralEstimate> spectral_norm_estimates(const std::vector<const Layer*>& layers,
                                                      int max_iterations, double tol,
                                                      unsigned long long seed);

}  // namespace lipcert
