#include "lipcert/certified_jacobian.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "lipcert/activation.hpp"
#include "lipcert/linear_ops.hpp"
#include "lipcert/rounding.hpp"

namespace lipcert {

CertifiedJacobian certified_jacobian(const Network& net, const Eigen::Ref<const Eigen::VectorXd>& x) {
  if (x.size() != net.input_size()) throw std::invalid_argument("certified_jacobian: input has the wrong size");
  CertifiedJacobian result;
  result.pattern_verified = true;
  result.min_margin = std::numeric_limits<double>::infinity();

  // Forward pass tracking a componentwise bound e on |computed - exact| of every intermediate vector.
  Eigen::MatrixXd z = x;
  Eigen::VectorXd e = Eigen::VectorXd::Zero(x.size());
  std::vector<Eigen::VectorXd> derivatives, derivative_errors;
  int max_inner = 1, products = 0;
  for (const Layer& l : net.layers()) {
    if (l.is_affine()) {
      const double g = gamma(l.inner_length() + 2);
      const Eigen::VectorXd magnitude = apply_linear(l, z.cwiseAbs(), false, true).col(0) +
                                        (l.kind == LayerKind::AvgPool2d ? Eigen::VectorXd::Zero(l.out_shape.size())
                                         : l.bias.size() == l.out_shape.size()
                                             ? Eigen::VectorXd(l.bias.cwiseAbs())
                                             : Eigen::VectorXd(apply_linear(l, Eigen::VectorXd::Zero(l.in_shape.size()),
                                                                            true).col(0).cwiseAbs()));
      const Eigen::VectorXd propagated = apply_linear(l, e, false, true).col(0);
      e = ((magnitude * g + propagated) * (1 + gamma(l.inner_length() + 4))).unaryExpr([](double v) { return round_up(v); });
      z = apply_linear(l, z, true);
      max_inner = std::max(max_inner, l.inner_length() + 2);
      ++products;
    } else if (l.is_activation()) {
      const Eigen::VectorXd zc = z.col(0);
      Eigen::VectorXd d = activation_derivative(l, zc);
      Eigen::VectorXd d_error = Eigen::VectorXd::Zero(zc.size());
      if (l.is_piecewise_linear_activation()) {
        for (Eigen::Index i = 0; i < zc.size(); ++i) {
          const double margin = std::abs(zc(i)) - e(i);
          result.min_margin = std::min(result.min_margin, margin);
          if (!(margin > 0)) result.pattern_verified = false;
        }
      } else {
        // The derivative is evaluated at the computed z: it moves by at most sup|s''| * e, plus its own
        // evaluation error (a few ulps of a value <= 1).
        d_error = (e * activation_second_derivative_bound(l)).array() + 16 * kUnitRoundoff;
      }
      derivatives.push_back(d);
      derivative_errors.push_back(d_error);
      apply_activation(l, z);
      const double lip = std::max(std::abs(l.slope_bounds().alpha), std::abs(l.slope_bounds().beta));
      e = (e * lip + z.col(0).cwiseAbs() * (16 * kUnitRoundoff)).array() + 1e-300;
    }
  }

  const Eigen::Index n_out = net.output_size();
  const Eigen::MatrixXd seed = Eigen::MatrixXd::Identity(n_out, n_out);
  result.jacobian = net.pull_back(derivatives, seed, false).transpose();
  // |J_computed - J_exact| <= (P_plus - P_abs) + theta P_plus, where P_abs uses |D| and P_plus uses
  // |D| + dD in the product of absolute factors, and theta = (1 + gamma_k)^(products + 1) - 1 covers the
  // rounding of every matrix product (and of computing P_plus, P_abs themselves).
  std::vector<Eigen::VectorXd> widened(derivatives.size());
  for (size_t i = 0; i < derivatives.size(); ++i) widened[i] = derivatives[i].cwiseAbs() + derivative_errors[i];
  const Eigen::MatrixXd p_abs = net.pull_back(derivatives, seed, true).transpose();
  const Eigen::MatrixXd p_plus = net.pull_back(widened, seed, true).transpose();
  const double theta = std::pow(1 + gamma(max_inner), products + 2) - 1;
  result.error_bound = ((p_plus - p_abs).cwiseMax(0.0) + p_plus * (4 * theta)) * (1 + 4 * kUnitRoundoff);
  return result;
}

}  // namespace lipcert
