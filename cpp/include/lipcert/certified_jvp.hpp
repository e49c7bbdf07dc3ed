#pragma once
/// Certified lower bounds on ||J(x) v||_q / ||v||_p: the Jacobian-vector product is propagated
/// forward in extended precision together with an elementwise bound on every rounding error (80-bit
/// long double; where that does not prove the pattern or loses over 1e-6 of the value to the error
/// bound, double words of 103 bits for piecewise-linear networks, then IEEE binary128; the best
/// result is kept), and the activation pattern at x is proved (no ReLU/LeakyReLU pre-activation
/// within its error of the kink, no MaxMin pair within its error of a tie), so the network is
/// differentiable at x and J(x) is the Jacobian of the region x lies in.
#include "lipcert/network.hpp"
#include "lipcert/operator_norm.hpp"

namespace lipcert {

struct CertifiedDirectional {
  double lower = 0.0;             ///< certified lower bound on ||J(x) v||_q / ||v||_p (0 if not proved)
  bool pattern_verified = false;  ///< the activation pattern at x is proved
  double min_margin = 0.0;        ///< min over kinked neurons of |z| - error(z), at the final precision
                                  ///< (where unproved, over the layers up to the first that failed)
  int precision_bits = 0;         ///< mantissa bits of the arithmetic that succeeded (64, 103 or 113)
  double error_share = 0.0;       ///< the error bound of the computed ||J v||_q relative to it
};

CertifiedDirectional certified_directional_lower(const Network& net, const Eigen::Ref<const Eigen::VectorXd>& x,
                                                 const Eigen::Ref<const Eigen::VectorXd>& v, Norm p, Norm q);

}  // namespace lipcert
