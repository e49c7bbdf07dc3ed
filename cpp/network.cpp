#include "lipcert/network.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>

#include "lipcert/activation.hpp"
#include "lipcert/linear_ops.hpp"

namespace lipcert {

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::Dense: return "Dense";
    case LayerKind::Conv2d: return "Conv2d";
    case LayerKind::AvgPool2d: return "AvgPool2d";
    case LayerKind::Flatten: return "Flatten";
    case LayerKind::ReLU: return "ReLU";
    case LayerKind::LeakyReLU: return "LeakyReLU";
    case LayerKind::Tanh: return "Tanh";
    case LayerKind::Sigmoid: return "Sigmoid";
    case LayerKind::MaxMin: return "MaxMin";
  }
  return "?";
}

std::string TensorShape::str() const {
  std::ostringstream s;
  if (spatial) s << "(" << channels << ", " << height << ", " << width << ")";
  else s << "(" << channels << ",)";
  return s.str();
}

Layer Layer::dense(Eigen::MatrixXd weight, Eigen::VectorXd bias) {
  Layer l;
  l.kind = LayerKind::Dense;
  l.weight = std::move(weight);
  l.bias = std::move(bias);
  return l;
}

Layer Layer::conv2d(Eigen::MatrixXd weight, Eigen::VectorXd bias, int in_channels, int kernel_h,
                    int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w) {
  Layer l;
  l.kind = LayerKind::Conv2d;
  l.weight = std::move(weight);
  l.bias = std::move(bias);
  l.in_channels = in_channels;
  l.kernel_h = kernel_h;
  l.kernel_w = kernel_w;
  l.stride_h = stride_h;
  l.stride_w = stride_w;
  l.pad_h = pad_h;
  l.pad_w = pad_w;
  return l;
}

Layer Layer::avg_pool2d(int kernel_h, int kernel_w, int stride_h, int stride_w) {
  Layer l;
  l.kind = LayerKind::AvgPool2d;
  l.kernel_h = kernel_h;
  l.kernel_w = kernel_w;
  l.stride_h = stride_h;
  l.stride_w = stride_w;
  return l;
}

Layer Layer::flatten() { return Layer{}; }

Layer Layer::activation(LayerKind kind, double negative_slope) {
  Layer l;
  l.kind = kind;
  l.negative_slope = negative_slope;
  return l;
}

SlopeBounds Layer::slope_bounds() const {
  switch (kind) {
    case LayerKind::ReLU: return {0.0, 1.0};
    case LayerKind::LeakyReLU: return {std::min(negative_slope, 1.0), std::max(negative_slope, 1.0)};
    case LayerKind::Tanh: return {0.0, 1.0};
    case LayerKind::Sigmoid: return {0.0, 0.25};
    default: throw std::logic_error(std::string("slope_bounds: ") + layer_kind_name(kind) + " is not an elementwise activation");
  }
}

double Layer::activation_lipschitz() const {
  if (kind == LayerKind::MaxMin) return 1.0;
  const SlopeBounds s = slope_bounds();
  return std::max(std::abs(s.alpha), std::abs(s.beta));
}

double Layer::multiply_adds() const {
  return is_affine() ? static_cast<double>(out_shape.size()) * inner_length() : 0.0;
}

int Layer::inner_length() const {
  switch (kind) {
    case LayerKind::Dense: return static_cast<int>(weight.cols());
    case LayerKind::Conv2d: return static_cast<int>(weight.cols());
    case LayerKind::AvgPool2d: return kernel_h * kernel_w + 1;
    default: return 1;
  }
}

namespace {

[[noreturn]] void fail(size_t index, const Layer& layer, const std::string& what) {
  std::ostringstream s;
  s << "layer " << index << " (" << layer_kind_name(layer.kind) << "): " << what;
  throw InvalidNetworkError(s.str());
}

bool all_finite(const Eigen::MatrixXd& m) { return m.allFinite(); }

int conv_out(int in, int kernel, int stride, int pad) { return (in + 2 * pad - kernel) / stride + 1; }

}  // namespace

Network::Network(TensorShape input_shape, std::vector<Layer> layers)
    : input_shape_(input_shape), layers_(std::move(layers)) {
  if (layers_.empty()) throw InvalidNetworkError("the network has no layers");
  if (input_shape_.size() <= 0) throw InvalidNetworkError("the input shape " + input_shape_.str() + " is empty");
  TensorShape shape = input_shape_;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = layers_[i];
    l.in_shape = shape;
    switch (l.kind) {
      case LayerKind::Dense: {
        if (shape.spatial) fail(i, l, "input has shape " + shape.str() + "; insert a Flatten layer before it");
        if (l.weight.cols() != shape.size())
          fail(i, l, "weight has " + std::to_string(l.weight.cols()) + " columns but the input has " +
                         std::to_string(shape.size()) + " features");
        if (l.weight.rows() == 0) fail(i, l, "weight has no rows");
        if (l.bias.size() != l.weight.rows())
          fail(i, l, "bias has " + std::to_string(l.bias.size()) + " entries, expected " +
                         std::to_string(l.weight.rows()));
        shape = TensorShape{static_cast<int>(l.weight.rows()), 1, 1, false};
        break;
      }
      case LayerKind::Conv2d: {
        if (!shape.spatial) fail(i, l, "input has shape " + shape.str() + "; Conv2d needs a (C, H, W) input");
        if (l.in_channels != shape.channels)
          fail(i, l, "weight expects " + std::to_string(l.in_channels) + " input channels but the input has " +
                         std::to_string(shape.channels));
        if (l.kernel_h <= 0 || l.kernel_w <= 0 || l.stride_h <= 0 || l.stride_w <= 0 || l.pad_h < 0 || l.pad_w < 0)
          fail(i, l, "kernel and stride must be positive and padding non-negative");
        if (l.weight.cols() != l.in_channels * l.kernel_h * l.kernel_w || l.weight.rows() == 0)
          fail(i, l, "weight has an inconsistent shape");
        const int oh = conv_out(shape.height, l.kernel_h, l.stride_h, l.pad_h);
        const int ow = conv_out(shape.width, l.kernel_w, l.stride_w, l.pad_w);
        if (shape.height + 2 * l.pad_h < l.kernel_h || shape.width + 2 * l.pad_w < l.kernel_w || oh <= 0 || ow <= 0)
          fail(i, l, "kernel is larger than the padded input " + shape.str());
        const int oc = static_cast<int>(l.weight.rows());
        if (l.bias.size() != oc && l.bias.size() != oc * oh * ow)
          fail(i, l, "bias has " + std::to_string(l.bias.size()) + " entries, expected " + std::to_string(oc));
        shape = TensorShape{oc, oh, ow, true};
        break;
      }
      case LayerKind::AvgPool2d: {
        if (!shape.spatial) fail(i, l, "input has shape " + shape.str() + "; AvgPool2d needs a (C, H, W) input");
        if (l.kernel_h <= 0 || l.kernel_w <= 0 || l.stride_h <= 0 || l.stride_w <= 0)
          fail(i, l, "kernel and stride must be positive");
        if (l.kernel_h > shape.height || l.kernel_w > shape.width)
          fail(i, l, "kernel is larger than the input " + shape.str());
        shape = TensorShape{shape.channels, conv_out(shape.height, l.kernel_h, l.stride_h, 0),
                            conv_out(shape.width, l.kernel_w, l.stride_w, 0), true};
        break;
      }
      case LayerKind::Flatten:
        shape = TensorShape{shape.size(), 1, 1, false};
        break;
      case LayerKind::LeakyReLU:
        if (!std::isfinite(l.negative_slope)) fail(i, l, "negative_slope is not finite");
        break;
      case LayerKind::MaxMin:
        if (shape.spatial ? shape.channels % 2 != 0 : shape.size() % 2 != 0)
          fail(i, l, "input has shape " + shape.str() + "; MaxMin pairs the two halves of the " +
                         (shape.spatial ? "channels" : "features") + ", so their number must be even");
        break;
      default:
        break;
    }
    if (!all_finite(l.weight) || !l.bias.allFinite()) fail(i, l, "weights contain NaN or inf");
    l.out_shape = shape;
  }
}

Eigen::MatrixXd Network::forward(const Eigen::Ref<const Eigen::MatrixXd>& x) const {
  if (x.rows() != input_size())
    throw std::invalid_argument("input has " + std::to_string(x.rows()) + " features, the network expects " +
                                std::to_string(input_size()));
  Eigen::MatrixXd z = x;
  for (const Layer& l : layers_) {
    if (l.is_affine()) z = apply_linear(l, z, true);
    else if (l.is_activation()) apply_activation(l, z);
  }
  return z;
}

Eigen::VectorXd Network::forward_with_derivatives(const Eigen::Ref<const Eigen::VectorXd>& x,
                                                  std::vector<Eigen::VectorXd>* derivatives) const {
  derivatives->clear();
  Eigen::MatrixXd z = x;
  for (const Layer& l : layers_) {
    if (l.is_affine()) {
      z = apply_linear(l, z, true);
    } else if (l.is_activation()) {
      derivatives->push_back(activation_derivative(l, z.col(0)));
      apply_activation(l, z);
    }
  }
  return z.col(0);
}

Eigen::MatrixXd Network::pull_back(const std::vector<Eigen::VectorXd>& derivatives, Eigen::MatrixXd g,
                                   bool absolute) const {
  size_t next = derivatives.size();
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    const Layer& l = *it;
    if (l.is_affine()) {
      g = apply_linear_transpose(l, g, absolute);
    } else if (l.is_activation()) {
      const Eigen::VectorXd& d = derivatives[--next];
      if (l.kind == LayerKind::MaxMin) {  // a symmetric permutation: swap the pairs that were swapped
        const Eigen::Index half = d.size() / 2;
        for (Eigen::Index i = 0; i < half; ++i)
          if (d(i) == 0.0) g.row(i).swap(g.row(i + half));
        continue;
      }
      if (absolute) g.array().colwise() *= d.array().abs();
      else g.array().colwise() *= d.array();
    }
  }
  return g;
}

void Network::jacobian(const Eigen::Ref<const Eigen::MatrixXd>& x, double* out) const {
  if (x.rows() != input_size())
    throw std::invalid_argument("input has " + std::to_string(x.rows()) + " features, the network expects " +
                                std::to_string(input_size()));
  const Eigen::Index n_in = input_size(), n_out = output_size();
  const Eigen::Index batch = x.cols();
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index b = 0; b < batch; ++b) {
    std::vector<Eigen::VectorXd> derivatives;
    forward_with_derivatives(x.col(b), &derivatives);
    // J^T as a column-major (n_in, n_out) matrix is J in row-major (n_out, n_in) layout.
    Eigen::Map<Eigen::MatrixXd>(out + b * n_in * n_out, n_in, n_out) =
        pull_back(derivatives, Eigen::MatrixXd::Identity(n_out, n_out), false);
  }
}

double Network::multiply_adds() const {
  double total = 0.0;
  for (const Layer& l : layers_) total += l.multiply_adds();
  return total;
}

bool Network::is_piecewise_linear() const {
  return std::all_of(layers_.begin(), layers_.end(), [](const Layer& l) {
    return !l.is_activation() || l.is_piecewise_linear_activation() || l.kind == LayerKind::MaxMin;
  });
}

Eigen::MatrixXd Network::vjp(const Eigen::Ref<const Eigen::MatrixXd>& x,
                             const Eigen::Ref<const Eigen::MatrixXd>& u) const {
  if (x.rows() != input_size() || u.rows() != output_size() || u.cols() != x.cols())
    throw std::invalid_argument("vjp: x must be (input_size, batch) and u (output_size, batch)");
  Eigen::MatrixXd result(input_size(), x.cols());
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index b = 0; b < x.cols(); ++b) {
    std::vector<Eigen::VectorXd> derivatives;
    forward_with_derivatives(x.col(b), &derivatives);
    result.col(b) = pull_back(derivatives, u.col(b), false);
  }
  return result;
}

}  // namespace lipcert
