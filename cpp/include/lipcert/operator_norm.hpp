#pragma once
/// Induced norms ||A||_{p->q} of one matrix, p, q in {1, 2, inf}, with certified bounds.
#include <Eigen/Dense>

namespace lipcert {

enum class Norm { One, Two, Inf };

/// Parses 1, 2 or inf (as a double); throws std::invalid_argument otherwise.
Norm norm_from_double(double p);
double norm_to_double(Norm p);

/// ||x||_p computed in floating point (not rounded outward).
double vector_norm(const Eigen::Ref<const Eigen::VectorXd>& x, Norm p);

/// Certified bounds on ||A||_{p->q}: lower is ||A v||_q / ||v||_p for the returned v with every
/// rounding error subtracted; upper is >= the true norm. exact means the pair is computed by an exact
/// method (closed form, SVD, or sign enumeration) so lower and upper differ only by rounding.
struct NormBounds {
  double lower = 0.0;
  double upper = 0.0;
  bool exact = false;
  Eigen::VectorXd argmax;
};

NormBounds operator_norm(const Eigen::Ref<const Eigen::MatrixXd>& a, Norm p, Norm q);

/// A certified lower bound on ||A v||_q / ||v||_p (rounding errors subtracted).
double certified_ratio_lower(const Eigen::Ref<const Eigen::MatrixXd>& a,
                             const Eigen::Ref<const Eigen::VectorXd>& v, Norm p, Norm q);

/// Certified upper bound on ||I||_{p->q} in dimension n (norm equivalence constant).
double norm_conversion_factor(int n, Norm p, Norm q);

}  // namespace lipcert
