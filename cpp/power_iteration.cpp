#include "lipcert/power_iteration.hpp"

#include <cmath>
#include <random>

#include "lipcert/linear_ops.hpp"

namespace lipcert {

std::vector<PowerIterationResult> power_iteration(const std::vector<const Layer*>& layers, int max_iterations,
                                                  double tol, unsigned long long seed) {
  std::vector<PowerIterationResult> results(layers.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& layer = *layers[i];
    std::mt19937_64 rng(seed + 7919 * i);
    std::normal_distribution<double> normal;
    Eigen::VectorXd v(layer.in_shape.size());
    for (Eigen::Index k = 0; k < v.size(); ++k) v(k) = normal(rng);
    v.normalize();
    PowerIterationResult& r = results[i];
    for (int it = 1; it <= max_iterations; ++it) {
      const Eigen::VectorXd u = apply_linear(layer, v, false);
      const double sigma = u.norm();  // ||A v|| with ||v|| = 1: never above ||A||_2
      const Eigen::VectorXd w = apply_linear_transpose(layer, u);
      r.iterations = it;
      const double previous = r.sigma;
      r.sigma = std::max(r.sigma, sigma);
      const double wn = w.norm();
      if (!(wn > 0)) {
        r.converged = true;
        break;
      }
      v = w / wn;
      if (it > 1 && std::abs(sigma - previous) <= tol * sigma) {
        r.converged = true;
        break;
      }
    }
  }
  return results;
}

}  // namespace lipcert
