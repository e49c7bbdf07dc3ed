#pragma once
/// Linear programming through HiGHS (used for feasibility of activation regions).
#include <Eigen/Dense>
#include <string>

namespace lipcert {

/// Version string of the linked HiGHS library.
std::string highs_version();

/// Chebyshev centre test: the largest r such that a ball of radius r (in the 2-norm) fits in
/// {x : A x <= b, lower <= x <= upper} (capped at 1e6); returns -1 when the polytope is empty.
double chebyshev_radius(const Eigen::Ref<const Eigen::MatrixXd>& a,
                        const Eigen::Ref<const Eigen::VectorXd>& b,
                        const Eigen::Ref<const Eigen::VectorXd>& lower,
                        const Eigen::Ref<const Eigen::VectorXd>& upper, Eigen::VectorXd* center);

}  // namespace lipcert
