#include "lipcert/activation.hpp"

#include <cmath>
#include <stdexcept>

namespace lipcert {

void apply_activation(const Layer& l, Eigen::Ref<Eigen::MatrixXd> z) {
  switch (l.kind) {
    case LayerKind::ReLU: z = z.cwiseMax(0.0); break;
    case LayerKind::LeakyReLU: {
      const double a = l.negative_slope;
      z = z.unaryExpr([a](double v) { return v > 0.0 ? v : a * v; });
      break;
    }
    case LayerKind::Tanh: z = z.array().tanh().matrix(); break;
    case LayerKind::Sigmoid:
      z = z.unaryExpr([](double v) {
        // Evaluated so that no exp overflows.
        if (v >= 0.0) return 1.0 / (1.0 + std::exp(-v));
        const double e = std::exp(v);
        return e / (1.0 + e);
      });
      break;
    case LayerKind::MaxMin: {
      const Eigen::Index half = z.rows() / 2;
      const Eigen::MatrixXd a = z.topRows(half), b = z.bottomRows(half);
      z.topRows(half) = a.cwiseMax(b);
      z.bottomRows(half) = a.cwiseMin(b);
      break;
    }
    default: throw std::logic_error("apply_activation: not an activation layer");
  }
}

Eigen::VectorXd activation_derivative(const Layer& l, const Eigen::Ref<const Eigen::VectorXd>& z) {
  switch (l.kind) {
    case LayerKind::ReLU: return z.unaryExpr([](double v) { return v > 0.0 ? 1.0 : 0.0; });
    case LayerKind::LeakyReLU: {
      const double a = l.negative_slope;
      return z.unaryExpr([a](double v) { return v > 0.0 ? 1.0 : a; });
    }
    case LayerKind::Tanh:
      return z.unaryExpr([](double v) {
        const double t = std::tanh(v);
        return 1.0 - t * t;
      });
    case LayerKind::Sigmoid:
      return z.unaryExpr([](double v) {
        const double s = v >= 0.0 ? 1.0 / (1.0 + std::exp(-v)) : std::exp(v) / (1.0 + std::exp(v));
        return s * (1.0 - s);
      });
    case LayerKind::MaxMin: {
      const Eigen::Index half = z.size() / 2;
      Eigen::VectorXd kept(z.size());
      for (Eigen::Index i = 0; i < half; ++i) kept(i) = kept(i + half) = z(i) >= z(i + half) ? 1.0 : 0.0;
      return kept;
    }
    default: throw std::logic_error("activation_derivative: not an activation layer");
  }
}

double activation_second_derivative_bound(const Layer& l) {
  switch (l.kind) {
    case LayerKind::Tanh: return 0.7699;     // max |tanh''| = 4 / (3 sqrt 3) = 0.76980...
    case LayerKind::Sigmoid: return 0.0963;  // max |s''| = 1 / (6 sqrt 3) = 0.09623...
    default: return 0.0;
  }
}

}  // namespace lipcert
