#pragma once
/// Reading lipcert's network file (the .npz that lipcert.Network.save and `lipcert export` write) in
/// C++, with no Python: an uncompressed ZIP of .npy arrays — "format" = "lipcert-network", "version",
/// "input_shape", "n_layers" and, per layer i, "layer{i}.kind" plus that kind's parameters
/// (Dense: weight (out, in), bias; Conv2d: weight (oc, ic, kh, kw), bias (oc) or (oc, oh, ow),
/// stride, padding; AvgPool2d: kernel_size, stride; LeakyReLU: negative_slope).
#include <string>

#include <Eigen/Dense>

#include "lipcert/network.hpp"

namespace lipcert {

/// Loads a network; throws InvalidNetworkError naming the file and the problem (not a ZIP, a
/// compressed archive, a missing or malformed array, an unknown layer kind, a newer format version).
Network load_network(const std::string& path);

/// Reads one float64 (or integer, converted) .npy file as a flat vector in C order, e.g. a centre
/// point for a query. Throws InvalidNetworkError on malformed input.
Eigen::VectorXd load_npy_vector(const std::string& path);

}  // namespace lipcert
