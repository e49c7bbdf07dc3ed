// Channel-wise LipSDP of a convolutional network, split by the 2-D DFT into one LMI per frequency.
//
// Why it is sound. Take the network's convolutions on a torus of N_h x N_w positions, N_h >= h + pad_h
// for every convolution's input height h (likewise for widths): a zero-padded stride-1 convolution of a
// map held at the torus's top-left corner, zero elsewhere, is then the circular one restricted to the
// output's corner (nothing wraps onto a valid position). Restricting to the corner is a 0/1 mask, and a
// mask after an activation is an activation too: at a masked position the output is the constant 0
// (slope 0), elsewhere the original (slopes [alpha, beta]). So the network is, exactly, a network of
// circular convolutions on the torus whose activations have slopes in [min(alpha, 0), max(beta, 0)],
// applied to an input that is zero off the corner, and the global average pool is (1 / (h w)) times
// the sum over the whole torus. LipSDP for that network with one multiplier per channel (the same at
// every position) bounds the original's constant (inputs off the corner only widen the supremum). Its
// LMI is built from circulant blocks and multipliers that commute with the unitary 2-D DFT, so it is
// block diagonal over frequencies: one LMI per frequency omega, with C_k(omega) = sum over kernel taps
// K_ab exp(2 pi i omega . (ab - pad) / N) in place of each convolution and sqrt(N_h N_w) / (h w) times
// the head's first weight at omega = 0 (the pool's only frequency). Conjugate frequencies give
// conjugate LMIs (the same eigenvalues): one of each pair is kept, as the real matrix [Re, -Im; Im, Re]
// (positive semidefinite iff the Hermitian one is), whose neurons 2c repeat the c channels'
// multipliers. The head (Dense and activation layers after the pool) enters every frequency's LMI; away
// from omega = 0 it is joined by a zero weight, so there its blocks are a principal submatrix of
// omega = 0's and add no constraint.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "lipcert/lipsdp.hpp"
#include "lipcert/network.hpp"
#include "lipcert/rounding.hpp"

namespace lipcert {

namespace {

using Eigen::MatrixXd;

constexpr double kTwoPi = 6.283185307179586;

struct SpatialLayer {
  const Layer* conv;
  double alpha, beta;  // the activation's slopes, widened to include 0
};

struct ConvolutionalSplit {
  std::vector<SpatialLayer> spatial;
  std::vector<Layer> head;  // after the pool (Flatten dropped)
  int pooled_height = 0, pooled_width = 0;
};

[[noreturn]] void unsupported(size_t index, const Layer& layer, const std::string& why) {
  throw UnsupportedLayerError("sdp (channel-wise): layer " + std::to_string(index) + " (" +
                              layer_kind_name(layer.kind) + ", input " + layer.in_shape.str() + ") " + why +
                              "; it takes stride-1 Conv2d layers each followed by an activation, then a global "
                              "AvgPool2d and Dense/activation layers");
}

ConvolutionalSplit split(const Network& net) {
  ConvolutionalSplit s;
  const auto& layers = net.layers();
  size_t i = 0;
  for (; i < layers.size() && layers[i].kind == LayerKind::Conv2d; i += 2) {
    const Layer& conv = layers[i];
    if (conv.stride_h != 1 || conv.stride_w != 1) unsupported(i, conv, "has a stride other than 1");
    if (i + 1 >= layers.size() || !layers[i + 1].is_activation() || layers[i + 1].kind == LayerKind::MaxMin)
      unsupported(i, conv, "is not followed by an elementwise activation (which takes in its zero padding)");
    const SlopeBounds slopes = layers[i + 1].slope_bounds();
    s.spatial.push_back({&conv, std::min(slopes.alpha, 0.0), std::max(slopes.beta, 0.0)});
  }
  if (s.spatial.empty()) throw UnsupportedLayerError("sdp (channel-wise): the network does not start with a Conv2d layer");
  if (i >= layers.size() || layers[i].kind != LayerKind::AvgPool2d) {
    if (i >= layers.size()) throw UnsupportedLayerError("sdp (channel-wise): the network ends without a global AvgPool2d");
    unsupported(i, layers[i], "is not a global average pool after the convolutions");
  }
  const Layer& pool = layers[i];
  if (pool.kernel_h != pool.in_shape.height || pool.kernel_w != pool.in_shape.width)
    unsupported(i, pool, "does not pool the whole map");
  s.pooled_height = pool.in_shape.height;
  s.pooled_width = pool.in_shape.width;
  for (++i; i < layers.size(); ++i) {
    const Layer& layer = layers[i];
    if (layer.kind == LayerKind::Flatten) continue;
    if (layer.kind != LayerKind::Dense && !(layer.is_activation() && layer.kind != LayerKind::MaxMin))
      unsupported(i, layer, "is not a Dense layer or an elementwise activation after the pool");
    s.head.push_back(layer);
  }
  if (s.head.empty() || s.head.back().kind != LayerKind::Dense)
    throw UnsupportedLayerError("sdp (channel-wise): the network must end with a Dense layer after its pool");
  return s;
}

struct Frequency {
  int u, v;
  bool self_conjugate;  // omega = -omega: the DFT blocks are real
};

// One frequency of each conjugate pair, (0, 0) first.
std::vector<Frequency> frequencies(int nh, int nw) {
  std::vector<Frequency> out;
  for (int u = 0; u < nh; ++u)
    for (int v = 0; v < nw; ++v) {
      const int cu = (nh - u) % nh, cv = (nw - v) % nw;
      if (std::make_pair(u, v) > std::make_pair(cu, cv)) continue;
      out.push_back({u, v, u == cu && v == cv});
    }
  return out;
}

struct ComplexBlock {
  MatrixXd re, im;
  double error;  // bound on the Frobenius norm of the real form's error
};

// C(omega) = sum_ab K_ab exp(2 pi i (u (a - pad_h) / nh + v (b - pad_w) / nw)), with the bound on its
// rounding: per entry, sum_ab |K_ab| (eps_trig + gamma_{taps + 1}) for each of Re and Im, eps_trig
// covering the angle's rounding (three operations on an argument below 2 pi) and the trig functions'.
ComplexBlock frequency_block(const Layer& conv, const Frequency& f, int nh, int nw) {
  const int taps = conv.kernel_h * conv.kernel_w;
  Eigen::VectorXd cosine(taps), sine(taps);
  const long long period = static_cast<long long>(nh) * nw;
  for (int a = 0; a < conv.kernel_h; ++a)
    for (int b = 0; b < conv.kernel_w; ++b) {
      const long long m = static_cast<long long>(f.u) * (a - conv.pad_h) * nw + static_cast<long long>(f.v) * (b - conv.pad_w) * nh;
      const long long turn = ((m % period) + period) % period;
      if (f.self_conjugate) {  // the angle is 0 or pi (turn 0 or period / 2): exactly +-1
        cosine(a * conv.kernel_w + b) = turn == 0 ? 1.0 : -1.0;
        sine(a * conv.kernel_w + b) = 0.0;
      } else {
        const double angle = kTwoPi * static_cast<double>(turn) / static_cast<double>(period);
        cosine(a * conv.kernel_w + b) = std::cos(angle);
        sine(a * conv.kernel_w + b) = std::sin(angle);
      }
    }
  const int out = static_cast<int>(conv.weight.rows()), in = conv.in_channels;
  ComplexBlock c{MatrixXd(out, in), MatrixXd(out, f.self_conjugate ? 0 : in), 0.0};
  MatrixXd magnitude(out, in);
  for (int i = 0; i < in; ++i) {
    const auto taps_of = conv.weight.middleCols(i * taps, taps);
    c.re.col(i) = taps_of * cosine;
    if (!f.self_conjugate) c.im.col(i) = taps_of * sine;
    magnitude.col(i) = taps_of.cwiseAbs().rowwise().sum();
  }
  const double trig = f.self_conjugate ? 0.0 : 32 * kUnitRoundoff;
  const double per_entry = trig + gamma(taps + 1);
  // Real form: Re and Im each appear twice, so ||E||_F^2 = 2 (||E_re||^2 + ||E_im||^2).
  const double copies = f.self_conjugate ? 1.0 : 4.0;
  c.error = round_up(1.01 * std::sqrt(copies) * per_entry * magnitude.norm());
  return c;
}

MatrixXd real_form(const ComplexBlock& c) {
  if (c.im.size() == 0) return c.re;
  MatrixXd r(2 * c.re.rows(), 2 * c.re.cols());
  r << c.re, -c.im, c.im, c.re;
  return r;
}

}  // namespace

bool channelwise_lipsdp_applies(const Network& net) {
  try {
    split(net);
    return true;
  } catch (const UnsupportedLayerError&) {
    return false;
  }
}

SharedLipSdp channelwise_lipsdp(const Network& net) {
  const ConvolutionalSplit s = split(net);
  int nh = 0, nw = 0;
  for (const SpatialLayer& layer : s.spatial) {
    const Layer& conv = *layer.conv;
    nh = std::max({nh, conv.in_shape.height + conv.pad_h, conv.out_shape.height});
    nw = std::max({nw, conv.in_shape.width + conv.pad_w, conv.out_shape.width});
  }
  const int c_last = s.spatial.back().conv->out_shape.channels;
  const Network head_net(TensorShape{c_last, 1, 1, false}, s.head);
  const SlopeRestrictedNetwork head = slope_restricted_network(head_net);

  // sqrt(N_h N_w) / (h w) times the head's first weight, with the factor's rounding (2 operations) and
  // the product's (1) on top of the head's own error.
  const double factor = std::sqrt(static_cast<double>(nh) * nw) / (static_cast<double>(s.pooled_height) * s.pooled_width);
  const MatrixXd pooled_head = factor * head.weights[0];
  const double head_error0 = head.weight_error.empty() ? 0.0 : head.weight_error[0];
  const double pooled_error =
      round_up(1.01 * factor * (3.02 * kUnitRoundoff * head.weights[0].norm() + head_error0));

  std::vector<int> group_offset(1, 0);  // per hidden layer, spatial then head
  for (const SpatialLayer& layer : s.spatial) group_offset.push_back(group_offset.back() + layer.conv->out_shape.channels);
  for (int k = 1; k <= head.hidden_layers(); ++k) group_offset.push_back(group_offset.back() + head.width(k));

  SharedLipSdp problem;
  problem.multipliers = group_offset.back();
  for (const Frequency& f : frequencies(nh, nw)) {
    SlopeRestrictedNetwork part;
    std::vector<int> group;
    for (size_t k = 0; k < s.spatial.size(); ++k) {
      const ComplexBlock c = frequency_block(*s.spatial[k].conv, f, nh, nw);
      part.weights.push_back(real_form(c));
      part.weight_error.push_back(c.error);
      part.alpha.push_back(s.spatial[k].alpha);
      part.beta.push_back(s.spatial[k].beta);
      const int channels = static_cast<int>(c.re.rows());
      for (int j = 0; j < static_cast<int>(part.weights.back().rows()); ++j) group.push_back(group_offset[k] + j % channels);
    }
    const bool origin = f.u == 0 && f.v == 0;
    const Eigen::Index last_width = part.weights.back().rows();
    part.weights.push_back(origin ? pooled_head : MatrixXd::Zero(head.weights[0].rows(), last_width));
    part.weight_error.push_back(origin ? pooled_error : 0.0);
    for (int k = 1; k <= head.hidden_layers(); ++k) {
      part.weights.push_back(head.weights[k]);
      part.weight_error.push_back(head.weight_error.empty() ? 0.0 : head.weight_error[k]);
      part.alpha.push_back(head.alpha[k - 1]);
      part.beta.push_back(head.beta[k - 1]);
      for (int j = 0; j < head.width(k); ++j) group.push_back(group_offset[s.spatial.size() + k - 1] + j);
    }
    problem.parts.push_back(std::move(part));
    problem.groups.push_back(std::move(group));
  }
  return problem;
}

}  // namespace lipcert
