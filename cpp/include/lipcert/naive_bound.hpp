#pragma once
/// `naive`: the product of certified operator norms of the layers, the cheapest global upper bound.
#include <string>
#include <vector>

#include "lipcert/network.hpp"
#include "lipcert/operator_norm.hpp"

namespace lipcert {

struct LayerNorm {
  int layer;        ///< index in net.layers()
  double norm;      ///< certified ||A||_{p->p} (the last affine layer: p->q)
  std::string how;  ///< "cholesky", "circulant", "closed-form" or "bound"
};

struct NaiveBound {
  double upper = 0.0;  ///< certified upper bound on the network's p->q Lipschitz constant
  std::vector<LayerNorm> layers;  ///< the affine layers' factors
};

/// Hidden affine layers are measured p -> p and the last one p -> q; activations contribute their
/// Lipschitz constant. Every factor is certified and the product is rounded upward.
NaiveBound naive_bound(const Network& net, Norm p, Norm q);

}  // namespace lipcert
