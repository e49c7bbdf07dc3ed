#pragma once
/// Matrix-free application of the affine layers to many vectors at once (one per column).
#include "lipcert/layer.hpp"

namespace lipcert {

/// y = A x (+ b when with_bias). absolute = true applies |A| instead (for rounding-error bounds).
Eigen::MatrixXd apply_linear(const Layer& layer, const Eigen::Ref<const Eigen::MatrixXd>& x,
                             bool with_bias, bool absolute = false);

/// x = A^T y (or |A|^T y when absolute).
Eigen::MatrixXd apply_linear_transpose(const Layer& layer, const Eigen::Ref<const Eigen::MatrixXd>& y,
                                       bool absolute = false);

/// b broadcast to the layer's output (zeros for pooling).
Eigen::VectorXd bias_vector(const Layer& layer);

/// |b| broadcast to the layer's output: the bias term of rounding-error bounds.
Eigen::VectorXd bias_magnitude(const Layer& layer);

/// The layer's linear part as a dense (out, in) matrix (built column by column; small layers only).
Eigen::MatrixXd dense_matrix(const Layer& layer);

}  // namespace lipcert
