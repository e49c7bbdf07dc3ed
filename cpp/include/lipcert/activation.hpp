#pragma once
#include "lipcert/layer.hpp"

namespace lipcert {

/// In place: z <- s(z), elementwise.
void apply_activation(const Layer& layer, Eigen::Ref<Eigen::MatrixXd> z);

/// s'(z) elementwise (0 at a ReLU kink); for MaxMin, 1 on the pairs it keeps and 0 on those it swaps.
Eigen::VectorXd activation_derivative(const Layer& layer, const Eigen::Ref<const Eigen::VectorXd>& z);

/// sup |s''|: how far the computed derivative can move when z moves (0 for piecewise linear).
double activation_second_derivative_bound(const Layer& layer);

}  // namespace lipcert
