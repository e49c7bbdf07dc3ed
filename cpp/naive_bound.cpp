#include "lipcert/naive_bound.hpp"

#include "lipcert/rounding.hpp"
#include "lipcert/spectral_norm.hpp"

namespace lipcert {

namespace {

// Certified ||A||_{p->q} of the linear part of an affine layer, and how it was obtained.
LayerNorm affine_layer_norm(const Layer& layer, int index, Norm p, Norm q) {
  if (p == Norm::Two && q == Norm::Two) {
    const LayerNormBound b = layer_spectral_upper(layer, 0.0);  // the estimate comes from an SVD
    return {index, b.upper, b.how};
  }
  if (layer.kind == LayerKind::Dense) {
    const NormBounds b = operator_norm(layer.weight, p, q);
    return {index, b.upper, b.exact ? "closed-form" : "bound"};
  }
  if (p == q && p != Norm::Two) return {index, layer_abs_sum_norm(layer, p == Norm::One), "closed-form"};
  // Convolution or pooling between different norms: ||A||_{p->q} <= ||A||_{p->p} ||I||_{p->q}.
  LayerNorm base = affine_layer_norm(layer, index, p, p);
  base.norm = mul_up(base.norm, norm_conversion_factor(layer.out_shape.size(), p, q));
  return base;
}

}  // namespace

NaiveBound naive_bound(const Network& net, Norm p, Norm q) {
  int last_affine = -1;
  for (size_t i = 0; i < net.layers().size(); ++i)
    if (net.layers()[i].is_affine()) last_affine = static_cast<int>(i);
  NaiveBound result;
  result.upper = last_affine < 0 ? norm_conversion_factor(net.output_size(), p, q) : 1.0;
  for (size_t i = 0; i < net.layers().size(); ++i) {
    const Layer& layer = net.layers()[i];
    if (layer.is_activation()) {
      result.upper = mul_up(result.upper, layer.activation_lipschitz());
    } else if (layer.is_affine()) {
      const int index = static_cast<int>(i);
      result.layers.push_back(affine_layer_norm(layer, index, p, index == last_affine ? q : p));
      result.upper = mul_up(result.upper, result.layers.back().norm);
    }
  }
  return result;
}

}  // namespace lipcert
