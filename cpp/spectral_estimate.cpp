#include "lipcert/spectral_estimate.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "lipcert/linear_ops.hpp"

namespace lipcert {

namespace {

// Removes from w its components along the first k columns of basis (twice, for stability).
void reorthogonalise(const Eigen::MatrixXd& basis, int k, Eigen::VectorXd& w) {
  if (k == 0) return;
  for (int pass = 0; pass < 2; ++pass) w -= basis.leftCols(k) * (basis.leftCols(k).transpose() * w);
}

SpectralEstimate estimate_one(const Layer& layer, int max_iterations, double tol, unsigned long long seed) {
  const int n = layer.in_shape.size(), m = layer.out_shape.size();
  const int steps = std::max(1, std::min({max_iterations, n, m}));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Eigen::MatrixXd v(n, steps + 1), u(m, steps);
  std::vector<double> alpha, beta;
  Eigen::VectorXd x(n);
  for (int k = 0; k < n; ++k) x(k) = normal(rng);
  v.col(0) = x.normalized();
  SpectralEstimate r;
  double previous = -1.0;
  int stable = 0;
  for (int j = 0; j < steps; ++j) {
    Eigen::VectorXd z = apply_linear(layer, v.col(j), false).col(0);
    if (j > 0) z -= beta.back() * u.col(j - 1);
    reorthogonalise(u, j, z);
    const double a = z.norm();
    r.iterations = j + 1;
    if (!(a > 0)) {  // an invariant subspace: the estimate so far is exact for it
      r.converged = true;
      break;
    }
    alpha.push_back(a);
    u.col(j) = z / a;
    Eigen::VectorXd w = apply_linear_transpose(layer, u.col(j)).col(0) - a * v.col(j);
    reorthogonalise(v, j + 1, w);
    const double b = w.norm();
    beta.push_back(b);
    if (b > 0) v.col(j + 1) = w / b;
    // sigma_max of C = U^T A [V v_next], the (j+1) x (j+2) upper bidiagonal matrix with alpha on the
    // diagonal and beta above it, from the eigenvalues of the tridiagonal C C^T.
    Eigen::VectorXd diag(j + 1), sub(j + 1);
    for (int i = 0; i <= j; ++i) diag(i) = alpha[i] * alpha[i] + beta[i] * beta[i];
    for (int i = 0; i < j; ++i) sub(i) = beta[i] * alpha[i + 1];
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig;
    eig.computeFromTridiagonal(diag, sub.head(j), Eigen::EigenvaluesOnly);
    const double sigma = std::sqrt(std::max(0.0, eig.eigenvalues().maxCoeff()));
    r.sigma = std::max(r.sigma, sigma);
    const bool small_change = std::abs(sigma - previous) <= tol * sigma;
    stable = small_change ? stable + 1 : 0;
    previous = sigma;
    if (stable >= 2 || !(b > 0)) {
      r.converged = true;
      break;
    }
  }
  if (r.iterations == std::min(n, m)) r.converged = true;  // the whole space was spanned
  return r;
}

}  // namespace

std::vector<SpectralEstimate> spectral_norm_estimates(const std::vector<const Layer*>& layers, int max_iterations,
                                                      double tol, unsigned long long seed) {
  std::vector<SpectralEstimate> results(layers.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < layers.size(); ++i) results[i] = estimate_one(*layers[i], max_iterations, tol, seed + 7919 * i);
  return results;
}

}  // namespace lipcert
