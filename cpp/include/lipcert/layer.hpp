#pragma once
/// The network IR: a chain of layers, each either affine (Dense, Conv2d, AvgPool2d), a reshape
/// (Flatten) or an activation: elementwise (ReLU, LeakyReLU, Tanh, Sigmoid) or MaxMin. Tensors are stored flat in (C, H, W) row-major order, one
/// sample per column of an Eigen matrix, which is exactly numpy's batch-first C-contiguous layout.
#include <Eigen/Dense>
#include <string>

namespace lipcert {

/// MaxMin (GroupSort with groups of 2, as in AOL networks) pairs element i with element i + n/2 of
/// the flat sample — for (C, H, W) tensors, channel c with channel c + C/2 at the same pixel — and
/// writes the pair's max to i and its min to i + n/2. Its Jacobian is a permutation, so it is
/// 1-Lipschitz in every p-norm.
enum class LayerKind { Dense, Conv2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Tanh, Sigmoid, MaxMin };

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
  bool is_elementwise_activation() const { return is_activation() && kind != LayerKind::MaxMin; }
  /// Elementwise piecewise-linear activations (ReLU, LeakyReLU): each neuron's derivative is constant
  /// on either side of its kink, which is what branch and bound splits.
  bool is_piecewise_linear_activation() const {
    return kind == LayerKind::ReLU || kind == LayerKind::LeakyReLU;
  }
  /// Of an elementwise activation; throws std::logic_error for other layers.
  SlopeBounds slope_bounds() const;
  /// Lipschitz constant of an activation in every p-norm (max |slope|; 1 for MaxMin).
  double activation_lipschitz() const;
  /// Longest inner product in one output element (for rounding-error bounds of affine layers).
  int inner_length() const;
  /// Multiply-adds of the layer's forward pass for one sample (0 for activations): what its reverse
  /// products cost too.
  double multiply_adds() const;
};

}  // namespace lipcert
