#pragma once
#include <stdexcept>
#include <vector>

#include "lipcert/layer.hpp"

namespace lipcert {

/// Raised when a network is malformed; the message names the layer and the problem.
class InvalidNetworkError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Raised when a method does not handle a (valid) layer; the message names the layer and the alternative.
class UnsupportedLayerError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A validated feed-forward network. Immutable after construction; safe to share between threads.
class Network {
 public:
  Network(TensorShape input_shape, std::vector<Layer> layers);

  const TensorShape& input_shape() const { return input_shape_; }
  const TensorShape& output_shape() const { return layers_.back().out_shape; }
  int input_size() const { return input_shape_.size(); }
  int output_size() const { return output_shape().size(); }
  const std::vector<Layer>& layers() const { return layers_; }
  /// Multiply-adds of one sample's forward pass (a vector-Jacobian product costs about twice that, a
  /// Jacobian about 1 + output_size times).
  double multiply_adds() const;
  /// Every activation is ReLU, LeakyReLU or MaxMin: the network is piecewise linear.
  bool is_piecewise_linear() const;

  /// Forward pass: x is (input_size, batch), one sample per column; returns (output_size, batch).
  Eigen::MatrixXd forward(const Eigen::Ref<const Eigen::MatrixXd>& x) const;

  /// Jacobians at each column of x. out points to batch * output_size * input_size doubles laid out
  /// as (batch, output_size, input_size) row-major. At a ReLU kink the derivative 0 is used.
  void jacobian(const Eigen::Ref<const Eigen::MatrixXd>& x, double* out) const;

  /// Vector-Jacobian products J(x_b)^T u_b for each column b (u is (output_size, batch)).
  Eigen::MatrixXd vjp(const Eigen::Ref<const Eigen::MatrixXd>& x,
                      const Eigen::Ref<const Eigen::MatrixXd>& u) const;

  /// Transposed Jacobian of one sample given the activation derivatives of that sample:
  /// seed (output_size, k) is pulled back to (input_size, k).
  Eigen::MatrixXd pull_back(const std::vector<Eigen::VectorXd>& derivatives,
                            Eigen::MatrixXd seed, bool absolute) const;

  /// Forward pass of one sample that records each activation layer's derivative vector (for MaxMin,
  /// 1 on both entries of a pair that is kept and 0 on both of one that is swapped).
  Eigen::VectorXd forward_with_derivatives(const Eigen::Ref<const Eigen::VectorXd>& x,
                                           std::vector<Eigen::VectorXd>* derivatives) const;

 private:
  TensorShape input_shape_;
  std::vector<Layer> layers_;
};

}  // namespace lipcert
