#pragma once
/// A Jacobian computed in floating point together with a bound on its error, for certified lower
/// bounds: ||J_true|| >= ||J_computed|| - ||E|| when |J_computed - J_true| <= E elementwise.
#include "lipcert/network.hpp"

namespace lipcert {

struct CertifiedJacobian {
  Eigen::MatrixXd jacobian;     ///< (output_size, input_size)
  Eigen::MatrixXd error_bound;  ///< elementwise bound on |jacobian - true Jacobian|
  /// False when some ReLU/LeakyReLU pre-activation is within its rounding error of the kink: then the
  /// computed activation pattern is not proved and f may not be differentiable at x.
  bool pattern_verified = false;
  double min_margin = 0.0;      ///< min over kinked neurons of |z| - error(z)
};

CertifiedJacobian certified_jacobian(const Network& net, const Eigen::Ref<const Eigen::VectorXd>& x);

}  // namespace lipcert
