#pragma once
// Points of an activation region {x : G x <= h} of a box found without an LP, for both
// branch-and-bound searches: hints that spare LPs, never proofs.
#include <Eigen/Dense>

namespace lipcert {

// A point of the region near x (a point of the parent's region that a split's new row cuts off, or an
// LP's vertex on some of the rows): x moved past the rows it violates or lies on, one after another,
// by a small fraction of each row's scale, so that every row ends strictly satisfied in floating
// point, and kept in the box [lower, upper] (bounds may be infinite). Empty when a few moves do not
// land in the region.
inline Eigen::VectorXd nearby_region_point(const Eigen::MatrixXd& g, const Eigen::VectorXd& h,
                                           const Eigen::VectorXd& lower, const Eigen::VectorXd& upper,
                                           Eigen::VectorXd x) {
  constexpr int kMoves = 4;
  constexpr double kDepth = 1e-6;
  if (x.size() != g.cols()) return Eigen::VectorXd();
  const Eigen::VectorXd row_norms = g.rowwise().norm();
  for (int move = 0; move <= kMoves && g.rows() > 0; ++move) {
    const Eigen::VectorXd depth = kDepth * (h.cwiseAbs() + row_norms * x.norm());
    Eigen::Index row;
    const double excess = (g * x - h + depth).maxCoeff(&row);
    if (excess <= 0) break;
    if (move == kMoves || !(row_norms(row) > 0)) return Eigen::VectorXd();
    x -= (excess / (row_norms(row) * row_norms(row))) * g.row(row).transpose();
    x = x.cwiseMax(lower).cwiseMin(upper);
  }
  const bool in_box = (x.array() >= lower.array()).all() && (x.array() <= upper.array()).all();
  return in_box && x.allFinite() ? x : Eigen::VectorXd();
}

}  // namespace lipcert
