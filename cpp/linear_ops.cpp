#include "lipcert/linear_ops.hpp"

#include <stdexcept>

namespace lipcert {

namespace {

// Calls f(position, k, input_index) for every kernel tap that reads an in-bounds input element:
// position = i * ow + j indexes the output, k = (c * kh + a) * kw + b the weight's (ic, kh, kw) column.
template <typename F>
void for_each_tap(const Layer& l, F&& f) {
  const TensorShape& in = l.in_shape;
  const int oh = l.out_shape.height, ow = l.out_shape.width;
  for (int c = 0; c < l.in_channels; ++c)
    for (int a = 0; a < l.kernel_h; ++a)
      for (int b = 0; b < l.kernel_w; ++b) {
        const int k = (c * l.kernel_h + a) * l.kernel_w + b;
        for (int i = 0; i < oh; ++i) {
          const int r = i * l.stride_h + a - l.pad_h;
          if (r < 0 || r >= in.height) continue;
          for (int j = 0; j < ow; ++j) {
            const int s = j * l.stride_w + b - l.pad_w;
            if (s < 0 || s >= in.width) continue;
            f(i * ow + j, k, (c * in.height + r) * in.width + s);
          }
        }
      }
}

// Rows of the im2col matrix are output positions, columns follow the weight's (ic, kh, kw) order,
// so that (positions x K) * W^T is an (positions x oc) column-major block: exactly the (oc, oh, ow)
// row-major layout of one output sample.
void im2col_transposed(const Layer& l, const double* x, Eigen::MatrixXd& cols) {
  cols.setZero(l.out_shape.height * l.out_shape.width, l.in_channels * l.kernel_h * l.kernel_w);
  for_each_tap(l, [&](int position, int k, int index) { cols(position, k) = x[index]; });
}

void col2im_transposed_add(const Layer& l, const Eigen::MatrixXd& cols, double* x) {
  for_each_tap(l, [&](int position, int k, int index) { x[index] += cols(position, k); });
}

Eigen::MatrixXd conv_forward(const Layer& l, const Eigen::Ref<const Eigen::MatrixXd>& x, bool with_bias,
                             const Eigen::MatrixXd& w) {
  const int positions = l.out_shape.height * l.out_shape.width;
  const int oc = l.out_shape.channels;
  Eigen::MatrixXd y(l.out_shape.size(), x.cols());
#pragma omp parallel for schedule(static) if (x.cols() > 1)
  for (Eigen::Index b = 0; b < x.cols(); ++b) {
    Eigen::MatrixXd cols;
    const Eigen::VectorXd xb = x.col(b);
    im2col_transposed(l, xb.data(), cols);
    Eigen::Map<Eigen::MatrixXd> yb(y.col(b).data(), positions, oc);
    yb.noalias() = cols * w.transpose();
    if (with_bias) {
      if (l.bias.size() == oc) yb.rowwise() += l.bias.transpose();
      else y.col(b) += l.bias;
    }
  }
  return y;
}

Eigen::MatrixXd conv_transpose(const Layer& l, const Eigen::Ref<const Eigen::MatrixXd>& y, const Eigen::MatrixXd& w) {
  const int positions = l.out_shape.height * l.out_shape.width;
  const int oc = l.out_shape.channels;
  Eigen::MatrixXd x = Eigen::MatrixXd::Zero(l.in_shape.size(), y.cols());
#pragma omp parallel for schedule(static) if (y.cols() > 1)
  for (Eigen::Index b = 0; b < y.cols(); ++b) {
    const Eigen::VectorXd yb_vec = y.col(b);
    Eigen::Map<const Eigen::MatrixXd> yb(yb_vec.data(), positions, oc);
    const Eigen::MatrixXd cols = yb * w;
    Eigen::VectorXd xb = Eigen::VectorXd::Zero(l.in_shape.size());
    col2im_transposed_add(l, cols, xb.data());
    x.col(b) = xb;
  }
  return x;
}

Eigen::MatrixXd pool_forward(const Layer& l, const Eigen::Ref<const Eigen::MatrixXd>& x) {
  const TensorShape& in = l.in_shape;
  const TensorShape& out = l.out_shape;
  const double scale = 1.0 / (l.kernel_h * l.kernel_w);
  Eigen::MatrixXd y(out.size(), x.cols());
  for (Eigen::Index b = 0; b < x.cols(); ++b)
    for (int c = 0; c < out.channels; ++c)
      for (int i = 0; i < out.height; ++i)
        for (int j = 0; j < out.width; ++j) {
          double sum = 0.0;
          for (int a = 0; a < l.kernel_h; ++a)
            for (int d = 0; d < l.kernel_w; ++d)
              sum += x((c * in.height + i * l.stride_h + a) * in.width + j * l.stride_w + d, b);
          y((c * out.height + i) * out.width + j, b) = sum * scale;
        }
  return y;
}

Eigen::MatrixXd pool_transpose(const Layer& l, const Eigen::Ref<const Eigen::MatrixXd>& y) {
  const TensorShape& in = l.in_shape;
  const TensorShape& out = l.out_shape;
  const double scale = 1.0 / (l.kernel_h * l.kernel_w);
  Eigen::MatrixXd x = Eigen::MatrixXd::Zero(in.size(), y.cols());
  for (Eigen::Index b = 0; b < y.cols(); ++b)
    for (int c = 0; c < out.channels; ++c)
      for (int i = 0; i < out.height; ++i)
        for (int j = 0; j < out.width; ++j) {
          const double g = y((c * out.height + i) * out.width + j, b) * scale;
          for (int a = 0; a < l.kernel_h; ++a)
            for (int d = 0; d < l.kernel_w; ++d)
              x((c * in.height + i * l.stride_h + a) * in.width + j * l.stride_w + d, b) += g;
        }
  return x;
}

}  // namespace

Eigen::MatrixXd apply_linear(const Layer& l, const Eigen::Ref<const Eigen::MatrixXd>& x, bool with_bias,
                             bool absolute) {
  switch (l.kind) {
    case LayerKind::Dense: {
      Eigen::MatrixXd y = absolute ? Eigen::MatrixXd(l.weight.cwiseAbs() * x) : Eigen::MatrixXd(l.weight * x);
      if (with_bias) y.colwise() += l.bias;
      return y;
    }
    case LayerKind::Conv2d:
      return absolute ? conv_forward(l, x, with_bias, l.weight.cwiseAbs()) : conv_forward(l, x, with_bias, l.weight);
    case LayerKind::AvgPool2d:
      return pool_forward(l, x);
    default:
      throw std::logic_error("apply_linear: not an affine layer");
  }
}

Eigen::MatrixXd apply_linear_transpose(const Layer& l, const Eigen::Ref<const Eigen::MatrixXd>& y, bool absolute) {
  switch (l.kind) {
    case LayerKind::Dense:
      return absolute ? Eigen::MatrixXd(l.weight.cwiseAbs().transpose() * y) : Eigen::MatrixXd(l.weight.transpose() * y);
    case LayerKind::Conv2d:
      return absolute ? conv_transpose(l, y, l.weight.cwiseAbs()) : conv_transpose(l, y, l.weight);
    case LayerKind::AvgPool2d:
      return pool_transpose(l, y);
    default:
      throw std::logic_error("apply_linear_transpose: not an affine layer");
  }
}

Eigen::VectorXd bias_vector(const Layer& l) {
  if (l.kind == LayerKind::AvgPool2d) return Eigen::VectorXd::Zero(l.out_shape.size());
  if (l.bias.size() == l.out_shape.size()) return l.bias;
  return apply_linear(l, Eigen::VectorXd::Zero(l.in_shape.size()), true).col(0);
}

Eigen::VectorXd bias_magnitude(const Layer& l) { return bias_vector(l).cwiseAbs(); }

Eigen::MatrixXd dense_matrix(const Layer& l) {
  if (l.kind == LayerKind::Dense) return l.weight;
  return apply_linear(l, Eigen::MatrixXd::Identity(l.in_shape.size(), l.in_shape.size()), false);
}

}  // namespace lipcert
