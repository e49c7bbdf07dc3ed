#pragma once
/// The network IR: a chain of layers, each either affine (Dense, Conv2d, AvgPool2d), a reshape
/// (Flatten) or an elementwise activation. Tensors are stored flat in (C, H, W) row-major order, one
/// sample per column of an Eigen matrix, which is exactly numpy's batch-first C-contiguous layout.
#include <Eigen/Dense>
#include <string>

namespace lipcert {

enum class LayerKind { Dense, Conv2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Tanh, Sigmoid };

/// Name used in error messages and reports ("Dense", "Conv2d", ...).
const char* layer_kind_name(LayerKind kind);

/// Shape of one sample: flat vectors have spatial == false and height == width == 1.
struct TensorShape {
  int channels = 0;
  int height = 1;
  int width = 1;
  bool spatial = false;
  int size() const { return channels * height * width; }
  std::string str() const;
};

/// Slope bounds [alpha, beta] of an activation: alpha <= (s(x) - s(y)) / (x - y) <= beta.
struct SlopeBounds {
  double alpha;
  double beta;
};

struct Layer {
  LayerKind kind = LayerKind::Flatten;
  /// Dense: (out, in). Conv2d: (out_channels, in_channels * kernel_h * kernel_w), PyTorch order.
  Eigen::MatrixXd weight;
  /// Dense: (out). Conv2d: (out_channels) or one entry per output element (folded normalisation).
  Eigen::VectorXd bias;
  int in_channels = 0;
  int kernel_h = 0, kernel_w = 0;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  double negative_slope = 0.0;
  /// Filled in by Network from the input shape.
  TensorShape in_shape, out_shape;

  static Layer dense(Eigen::MatrixXd weight, Eigen::VectorXd bias);
  static Layer conv2d(Eigen::MatrixXd weight, Eigen::VectorXd bias, int in_channels, int kernel_h,
                      int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w);
  static Layer avg_pool2d(int kernel_h, int kernel_w, int stride_h, int stride_w);
  static Layer flatten();
  static Layer activation(LayerKind kind, double negative_slope = 0.0);

  bool is_affine() const {
    return kind == LayerKind::Dense || kind == LayerKind::Conv2d || kind == LayerKind::AvgPool2d;
  }
  bool is_activation() const { return kind >= LayerKind::ReLU; }
  /// Piecewise linear activations have a Jacobian that is constant on each activation region.
  bool is_piecewise_linear_activation() const {
    return kind == LayerKind::ReLU || kind == LayerKind::LeakyReLU;
  }
  SlopeBounds slope_bounds() const;
  /// Longest inner product in one output element (for rounding-error bounds of affine layers).
  int inner_length() const;
};

}  // namespace lipcert
