// A network in LipSDP's form: W_0, phi_1, W_1, ..., phi_l, W_l.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "lipcert/linear_ops.hpp"
#include "lipcert/lipsdp.hpp"
#include "lipcert/network.hpp"
#include "lipcert/rounding.hpp"
#include "lipcert/spectral_norm.hpp"

namespace lipcert {

namespace {

struct Factor {
  Eigen::MatrixXd matrix;
  bool rounded;  // entries are roundings of the layer's (e.g. 1/9 for 3x3 pooling)
};

// Appends the product of a linear stretch (factors first applied first) and a bound on the Frobenius
// norm of its error: |fl(A_k ... A_1) - A_k ... A_1| <= gamma_n |A_k| ... |A_1|, n the summed inner
// dimensions plus one per rounded factor.
void close_stretch(SlopeRestrictedNetwork& out, const std::vector<Factor>& stretch, int size) {
  if (stretch.empty()) {
    out.weights.push_back(Eigen::MatrixXd::Identity(size, size));
    out.weight_error.push_back(0.0);
    return;
  }
  Eigen::MatrixXd product = stretch[0].matrix, magnitude = stretch[0].matrix.cwiseAbs();
  double terms = stretch[0].rounded ? 1 : 0;
  for (size_t i = 1; i < stretch.size(); ++i) {
    terms += static_cast<double>(stretch[i].matrix.cols()) + (stretch[i].rounded ? 1 : 0);
    product = stretch[i].matrix * product;
    magnitude = stretch[i].matrix.cwiseAbs() * magnitude;
  }
  const bool exact = stretch.size() == 1 && !stretch[0].rounded;
  // 1.01 covers the rounding of the magnitude product itself.
  const double error = exact ? 0.0 : round_up(1.01 * gamma(terms + 2) * magnitude.norm());
  out.weights.push_back(std::move(product));
  out.weight_error.push_back(error);
}

bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace

SlopeRestrictedNetwork slope_restricted_network(const Network& net) {
  SlopeRestrictedNetwork out;
  std::vector<Factor> stretch;
  const auto& layers = net.layers();
  int size = layers.empty() ? 0 : layers.front().in_shape.size();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& layer = layers[i];
    if (layer.kind == LayerKind::MaxMin) {
      // With u = a + b and v = a - b for each pair (a, b): (max, min) = R (u, |v|) / 2 with
      // R = [[I, I], [I, -I]]. So MaxMin is R, then |.| on v and the identity on u — both with slopes
      // in [-1, 1] — then R / 2; the entries +-1 and +-1/2 are exact, the products' rounding is bounded.
      const int half = size / 2;
      Eigen::MatrixXd rotation(size, size);
      rotation << Eigen::MatrixXd::Identity(half, half), Eigen::MatrixXd::Identity(half, half),
          Eigen::MatrixXd::Identity(half, half), -Eigen::MatrixXd::Identity(half, half);
      stretch.push_back({rotation, false});
      close_stretch(out, stretch, size);
      stretch.assign(1, {0.5 * rotation, false});
      out.alpha.push_back(-1.0);
      out.beta.push_back(1.0);
    } else if (layer.is_activation()) {
      close_stretch(out, stretch, size);
      stretch.clear();
      const SlopeBounds s = layer.slope_bounds();
      out.alpha.push_back(s.alpha);
      out.beta.push_back(s.beta);
    } else if (layer.kind == LayerKind::Dense) {
      stretch.push_back({layer.weight, false});
    } else if (layer.is_affine()) {
      if (!conv_is_unrollable(layer))
        throw UnsupportedLayerError("sdp: layer " + std::to_string(i) + " (" + layer_kind_name(layer.kind) +
                                    ", input " + layer.in_shape.str() +
                                    ") is too large to unroll to a matrix; use method='autolip' for this network");
      const bool rounded = layer.kind == LayerKind::AvgPool2d && !power_of_two(layer.kernel_h * layer.kernel_w);
      stretch.push_back({dense_matrix(layer), rounded});
    }
    size = layer.out_shape.size();
  }
  close_stretch(out, stretch, size);
  return out;
}

}  // namespace lipcert
