// Bindings only: numpy arrays map onto Eigen without copies where the layout allows.
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "lipcert/bab.hpp"
#include "lipcert/certified_jvp.hpp"
#include "lipcert/linear_ops.hpp"
#include "lipcert/lipsdp.hpp"
#include "lipcert/lp.hpp"
#include "lipcert/naive_bound.hpp"
#include "lipcert/network.hpp"
#include "lipcert/network_file.hpp"
#include "lipcert/operator_norm.hpp"
#include "lipcert/seqlip.hpp"
#include "lipcert/spectral_estimate.hpp"
#include "lipcert/spectral_norm.hpp"
#include "lipcert/subdomain_bounds.hpp"

namespace py = pybind11;
using namespace lipcert;

namespace {

using Batch = py::array_t<double, py::array::c_style | py::array::forcecast>;

// A (batch, features) C-contiguous array viewed as an Eigen (features, batch) column-major matrix.
Eigen::Map<const Eigen::MatrixXd> as_columns(const Batch& x, Eigen::Index features) {
  if (x.ndim() != 2 || x.shape(1) != features)
    throw std::invalid_argument("expected an array of shape (batch, " + std::to_string(features) + ")");
  return Eigen::Map<const Eigen::MatrixXd>(x.data(), features, x.shape(0));
}

// Boxes given as (batch, input_size) rows, with optional per-subdomain activation states.
std::vector<Subdomain> make_subdomains(const Eigen::MatrixXd& lowers, const Eigen::MatrixXd& uppers,
                                       const std::vector<std::vector<NeuronStates>>& states) {
  if (lowers.rows() != uppers.rows() || lowers.cols() != uppers.cols() ||
      (!states.empty() && states.size() != static_cast<size_t>(lowers.rows())))
    throw std::invalid_argument("bound_subdomains: lowers, uppers and states must describe the same batch");
  std::vector<Subdomain> subdomains(lowers.rows());
  for (Eigen::Index i = 0; i < lowers.rows(); ++i) {
    subdomains[i].lower = lowers.row(i).transpose();
    subdomains[i].upper = uppers.row(i).transpose();
    if (!states.empty()) subdomains[i].states = states[i];
  }
  return subdomains;
}

LipSdpOptions lipsdp_options(double tol, int max_newton_steps, int single_precision_newton_from) {
  LipSdpOptions options;
  options.tol = tol;
  options.max_newton_steps = max_newton_steps;
  options.single_precision_newton_from = single_precision_newton_from;
  return options;
}

py::dict lipsdp_result_dict(const LipSdpResult& r) {
  py::dict d;
  d["multipliers"] = r.multipliers;
  d["rho"] = r.rho;
  d["certified_upper"] = r.certified_upper;
  d["newton_steps"] = r.newton_steps;
  d["primal_dual_steps"] = r.primal_dual_steps;
  d["chain_steps"] = r.chain_steps;
  d["relative_gap"] = r.relative_gap;
  d["status"] = r.status;
  return d;
}

BabOptions bab_options(double tol, double time_limit, long max_nodes, int batch, double progress_interval) {
  // The HiGHS instances of the calling Python thread, kept between its searches: lipschitz() on a
  // small net is a search of a millisecond, of which making them would be ~15%.
  thread_local const std::shared_ptr<LpSolverPool> lp_solvers = std::make_shared<LpSolverPool>();
  BabOptions options;
  options.lp_solvers = lp_solvers;
  options.tol = tol;
  options.time_limit = time_limit;
  options.max_nodes = max_nodes;
  options.batch = batch;
  options.progress_interval = progress_interval;
  return options;
}

// Called with the GIL released: takes it to check for Ctrl-C (which stops the search cleanly with the
// bounds so far) and to call `progress` unless it is None.
std::function<bool(const BabProgress&)> bab_progress(const py::object& progress) {
  return [&progress](const BabProgress& state) {
    py::gil_scoped_acquire acquire;
    if (PyErr_CheckSignals() != 0) {
      PyErr_Clear();
      return false;
    }
    if (progress.is_none()) return true;
    return progress(state.lower, state.upper, state.seconds, state.nodes, state.open).cast<bool>();
  };
}

py::dict bab_result_dict(const BabResult& r) {
  py::dict d;
  d["lower"] = r.lower;
  d["upper"] = r.upper;
  d["witness"] = r.witness;
  d["exact"] = r.exact;
  d["status"] = r.status;
  d["nodes"] = r.nodes;
  d["pruned_by_bounds"] = r.pruned_by_bounds;
  d["pruned_by_lp"] = r.pruned_by_lp;
  d["region_proofs"] = r.region_proofs;
  d["fixed_by_lp"] = r.fixed_by_lp;
  d["leaves"] = r.leaves;
  d["open"] = r.open;
  return d;
}

// The given bounder, or the CPU one when None was passed.
std::shared_ptr<SubdomainBounder> bounder_or_cpu(std::shared_ptr<SubdomainBounder> bounder, const Network& net) {
  return bounder ? std::move(bounder) : std::make_shared<CpuSubdomainBounder>(net);
}

const Layer& layer_at(const Network& net, int index) {
  if (index < 0 || index >= static_cast<int>(net.layers().size())) throw py::index_error("layer index out of range");
  return net.layers()[index];
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "lipcert C++ core (private; use the lipcert package)";
  m.attr("lipsdp_primal_dual_from_layers") = kLipSdpPrimalDualFromLayers;

  py::enum_<LayerKind>(m, "LayerKind")
      .value("Dense", LayerKind::Dense)
      .value("Conv2d", LayerKind::Conv2d)
      .value("AvgPool2d", LayerKind::AvgPool2d)
      .value("Flatten", LayerKind::Flatten)
      .value("ReLU", LayerKind::ReLU)
      .value("LeakyReLU", LayerKind::LeakyReLU)
      .value("Tanh", LayerKind::Tanh)
      .value("Sigmoid", LayerKind::Sigmoid)
      .value("MaxMin", LayerKind::MaxMin);

  py::class_<Layer>(m, "Layer")
      .def_static("dense", &Layer::dense)
      .def_static("conv2d", &Layer::conv2d)
      .def_static("avg_pool2d", &Layer::avg_pool2d)
      .def_static("flatten", &Layer::flatten)
      .def_static("activation", &Layer::activation, py::arg("kind"), py::arg("negative_slope") = 0.0)
      .def_readonly("kind", &Layer::kind);

  py::class_<Network>(m, "Network")
      .def(py::init([](std::vector<int> shape, std::vector<Layer> layers) {
             TensorShape s;
             if (shape.size() == 1) s = TensorShape{shape[0], 1, 1, false};
             else if (shape.size() == 3) s = TensorShape{shape[0], shape[1], shape[2], true};
             else throw InvalidNetworkError("input_shape must be (n,) or (C, H, W)");
             return Network(s, std::move(layers));
           }))
      .def_property_readonly("input_size", &Network::input_size)
      .def_property_readonly("output_size", &Network::output_size)
      .def_property_readonly("multiply_adds", &Network::multiply_adds)
      .def("forward", [](const Network& net, const Batch& x) {
        const auto xs = as_columns(x, net.input_size());
        Eigen::MatrixXd y;
        {
          py::gil_scoped_release release;
          y = net.forward(xs);
        }
        py::array_t<double> out({x.shape(0), static_cast<py::ssize_t>(net.output_size())});
        Eigen::Map<Eigen::MatrixXd>(out.mutable_data(), net.output_size(), x.shape(0)) = y;
        return out;
      })
      .def("jacobian", [](const Network& net, const Batch& x) {
        const auto xs = as_columns(x, net.input_size());
        py::array_t<double> out({x.shape(0), static_cast<py::ssize_t>(net.output_size()),
                                 static_cast<py::ssize_t>(net.input_size())});
        double* data = out.mutable_data();
        py::gil_scoped_release release;
        net.jacobian(xs, data);
        return out;
      })
      .def("vjp", [](const Network& net, const Batch& x, const Batch& u) {
        const auto xs = as_columns(x, net.input_size());
        const auto us = as_columns(u, net.output_size());
        Eigen::MatrixXd g;
        {
          py::gil_scoped_release release;
          g = net.vjp(xs, us);
        }
        py::array_t<double> out({x.shape(0), static_cast<py::ssize_t>(net.input_size())});
        Eigen::Map<Eigen::MatrixXd>(out.mutable_data(), net.input_size(), x.shape(0)) = g;
        return out;
      })
      .def("layer_shapes", [](const Network& net) {
        std::vector<std::pair<std::vector<int>, std::vector<int>>> shapes;
        auto as_list = [](const TensorShape& s) {
          return s.spatial ? std::vector<int>{s.channels, s.height, s.width} : std::vector<int>{s.channels};
        };
        for (const Layer& l : net.layers()) shapes.push_back({as_list(l.in_shape), as_list(l.out_shape)});
        return shapes;
      });

  m.def("load_network_file", &load_network, py::arg("path"),
        "The C++ reader of lipcert's network file (what lipcert-bench uses).");

  m.def("operator_norm", [](const Eigen::MatrixXd& a, double p, double q) {
    NormBounds r;
    {
      py::gil_scoped_release release;
      r = operator_norm(a, norm_from_double(p), norm_from_double(q));
    }
    return py::make_tuple(r.lower, r.upper, r.exact, r.argmax);
  }, "Certified (lower, upper, exact, argmax) of ||A||_{p->q}.");
  m.def("certified_ratio_lower", [](const Eigen::MatrixXd& a, const Eigen::VectorXd& v, double p, double q) {
    return certified_ratio_lower(a, v, norm_from_double(p), norm_from_double(q));
  });
  m.def("naive_bound", [](const Network& net, double p, double q) {
    NaiveBound b;
    {
      py::gil_scoped_release release;
      b = naive_bound(net, norm_from_double(p), norm_from_double(q));
    }
    py::list layers;
    for (const LayerNorm& l : b.layers)
      layers.append(py::dict(py::arg("layer") = l.layer, py::arg("kind") = layer_kind_name(net.layers()[l.layer].kind),
                             py::arg("norm") = l.norm, py::arg("how") = l.how));
    return py::make_tuple(b.upper, layers);
  }, "Certified product of the layers' operator norms, and each affine layer's factor.");
  m.def("norm_conversion_factor", [](int n, double p, double q) {
    return norm_conversion_factor(n, norm_from_double(p), norm_from_double(q));
  });
  m.def("certified_spectral_norm", &certified_spectral_norm, py::arg("a"), py::arg("estimate"),
        py::call_guard<py::gil_scoped_release>());
  m.def("prove_spectral_bound", &prove_spectral_bound, py::arg("a"), py::arg("s"),
        py::call_guard<py::gil_scoped_release>());
  m.def("svd_spectral_norm", &svd_spectral_norm, py::call_guard<py::gil_scoped_release>());

  m.def("spectral_norm_estimates", [](const Network& net, std::vector<int> indices, int max_iterations, double tol,
                                      unsigned long long seed) {
    std::vector<const Layer*> layers;
    for (int i : indices) layers.push_back(&layer_at(net, i));
    std::vector<SpectralEstimate> results;
    {
      py::gil_scoped_release release;
      results = spectral_norm_estimates(layers, max_iterations, tol, seed);
    }
    py::list out;
    for (const auto& r : results) out.append(py::make_tuple(r.sigma, r.iterations, r.converged));
    return out;
  }, "Matrix-free Krylov estimates (sigma, steps, converged) of the layers' spectral norms (not certified).");
  m.def("layer_spectral_upper", [](const Network& net, int index, double estimate) {
    LayerNormBound b;
    {
      py::gil_scoped_release release;
      b = layer_spectral_upper(layer_at(net, index), estimate);
    }
    return py::make_tuple(b.upper, b.how);
  });
  m.def("conv_is_unrollable", [](const Network& net, int index) {
    const Layer& l = layer_at(net, index);
    return l.kind == LayerKind::Conv2d && conv_is_unrollable(l);
  });
  m.def("linear_layer_is_unrollable", [](const Network& net, int index) {
    const Layer& l = layer_at(net, index);
    return l.is_affine() && conv_is_unrollable(l);
  }, "Whether a convolution or pooling layer is small enough to unroll to a matrix (as sdp does).");
  m.def("layer_abs_sum_norm", [](const Network& net, int index, bool columns) {
    return layer_abs_sum_norm(layer_at(net, index), columns);
  });
  m.def("layer_dense_matrix", [](const Network& net, int index) { return dense_matrix(layer_at(net, index)); });
  m.def("conv_circulant_spectral_bound", [](const Network& net, int index) {
    const Layer& l = layer_at(net, index);
    if (l.kind != LayerKind::Conv2d) throw std::invalid_argument("not a Conv2d layer");
    py::gil_scoped_release release;
    return conv_circulant_spectral_bound(l);
  });

  m.def("certified_directional_lower", [](const Network& net, const Eigen::VectorXd& x, const Eigen::VectorXd& v,
                                          double p, double q) {
    CertifiedDirectional r;
    {
      py::gil_scoped_release release;
      r = certified_directional_lower(net, x, v, norm_from_double(p), norm_from_double(q));
    }
    return py::make_tuple(r.lower, r.pattern_verified, r.min_margin, r.precision_bits);
  }, "Certified lower bound on ||J(x) v||_q / ||v||_p in extended precision, with the pattern proof.");

  py::class_<SubdomainBounder, std::shared_ptr<SubdomainBounder>>(
      m, "SubdomainBounder", "Bounds batches of branch-and-bound subdomains (CPU here; the GPU one in lipcert._cuda).")
      .def_property_readonly("preferred_batch", &SubdomainBounder::preferred_batch);
  py::class_<CpuSubdomainBounder, SubdomainBounder, std::shared_ptr<CpuSubdomainBounder>>(m, "CpuSubdomainBounder")
      .def(py::init<const Network&, bool>(), py::keep_alive<1, 2>(), py::arg("net"), py::arg("linear_relaxation") = true,
           "linear_relaxation=False: interval pre-activation bounds only (what the GPU bounder computes).");

  m.def("bound_subdomains", [](const Network& net, const Eigen::MatrixXd& lowers, const Eigen::MatrixXd& uppers,
                               const std::vector<std::vector<NeuronStates>>& states, double p, double q,
                               std::shared_ptr<SubdomainBounder> bounder) {
    // lowers, uppers: (batch, input_size); states: per subdomain, per activation layer (may be empty)
    const std::vector<Subdomain> subdomains = make_subdomains(lowers, uppers, states);
    const auto chosen = bounder_or_cpu(std::move(bounder), net);
    std::vector<SubdomainBound> results;
    {
      py::gil_scoped_release release;
      results = chosen->bound(subdomains, norm_from_double(p), norm_from_double(q));
    }
    py::list out;
    for (const auto& r : results) {
      py::list unstable;
      for (const auto& u : r.unstable) unstable.append(py::make_tuple(u.layer, u.neuron, u.score));
      py::dict d;
      d["feasible"] = r.feasible;
      d["pre_lower"] = r.pre_lower;
      d["pre_upper"] = r.pre_upper;
      d["jacobian_center"] = r.jacobian_center;
      d["jacobian_radius"] = r.jacobian_radius;
      d["norm_upper"] = r.norm_upper;
      d["unstable"] = unstable;
      d["region_g"] = r.region_g;
      d["region_g_error"] = r.region_g_error;
      d["region_h"] = r.region_h;
      d["region_h_error"] = r.region_h_error;
      out.append(d);
    }
    return out;
  }, py::arg("net"), py::arg("lowers"), py::arg("uppers"), py::arg("states"), py::arg("p"), py::arg("q"),
     py::arg("bounder") = nullptr,
     "Certified bounds over box-and-assignment subdomains (interval pre-activations, Jacobian set, its norm).");

  m.def("time_bound_subdomains", [](const Network& net, const Eigen::MatrixXd& lowers, const Eigen::MatrixXd& uppers,
                                    const std::vector<std::vector<NeuronStates>>& states, double p, double q,
                                    std::shared_ptr<SubdomainBounder> bounder, int repeat) {
    // For benchmarks: the bounding alone, without converting results to Python objects.
    const std::vector<Subdomain> subdomains = make_subdomains(lowers, uppers, states);
    const auto chosen = bounder_or_cpu(std::move(bounder), net);
    py::gil_scoped_release release;
    double best = std::numeric_limits<double>::infinity();
    std::vector<double> norms;
    for (int r = 0; r < std::max(1, repeat); ++r) {
      const auto start = std::chrono::steady_clock::now();
      const std::vector<SubdomainBound> results = chosen->bound(subdomains, norm_from_double(p), norm_from_double(q));
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      norms.clear();
      for (const auto& b : results) norms.push_back(b.feasible ? b.norm_upper : std::nan(""));
    }
    return std::make_pair(best, norms);
  }, py::arg("net"), py::arg("lowers"), py::arg("uppers"), py::arg("states"), py::arg("p"), py::arg("q"),
     py::arg("bounder") = nullptr, py::arg("repeat") = 3,
     "Best-of-repeat seconds to bound the subdomains (C++ only) and each norm bound (NaN where empty).");

  m.def("lipschitz_bab", [](const Network& net, const Eigen::VectorXd& lower, const Eigen::VectorXd& upper, double p,
                            double q, double tol, double time_limit, long max_nodes, double initial_lower,
                            const Eigen::VectorXd& initial_witness, py::object progress,
                            std::shared_ptr<SubdomainBounder> bounder, int batch, double progress_interval,
                            std::optional<Eigen::VectorXd> l1_center, double l1_radius, int input_bisection,
                            long lp_tightening_after) {
    BabOptions options = bab_options(tol, time_limit, max_nodes, batch, progress_interval);
    if (l1_center) options.l1_ball = L1Ball{*l1_center, l1_radius};
    if (input_bisection < 0) throw std::invalid_argument("lipschitz_bab: input_bisection must be >= 0");
    options.input_bisection = input_bisection;
    if (lp_tightening_after < -1) throw std::invalid_argument("lipschitz_bab: lp_tightening_after must be >= -1");
    options.lp_tightening_after = lp_tightening_after;
    options.bounder = std::move(bounder);
    const auto callback = bab_progress(progress);
    BabResult r;
    {
      py::gil_scoped_release release;
      r = lipschitz_bab(net, lower, upper, norm_from_double(p), norm_from_double(q), options, initial_lower,
                        initial_witness, callback);
    }
    py::dict d = bab_result_dict(r);
    d["lp_tightening_after"] = options.lp_tightening_after;
    return d;
  }, py::arg("net"), py::arg("lower"), py::arg("upper"), py::arg("p"), py::arg("q"), py::arg("tol"),
     py::arg("time_limit"), py::arg("max_nodes"), py::arg("initial_lower"), py::arg("initial_witness"),
     py::arg("progress"), py::arg("bounder") = nullptr, py::arg("batch") = 0, py::arg("progress_interval") = 0.5,
     py::arg("l1_center") = py::none(), py::arg("l1_radius") = 0.0, py::arg("input_bisection") = 0,
     py::arg("lp_tightening_after") = BabOptions{}.lp_tightening_after,
     "Branch and bound over activation patterns on a box (or an l1 ball in it): certified bounds and a witness.");
  m.def("lipschitz_bab_global", [](const Network& net, double p, double q, double tol, double time_limit,
                                   long max_nodes, double initial_lower, const Eigen::VectorXd& initial_witness,
                                   py::object progress, int batch, double progress_interval) {
    const BabOptions options = bab_options(tol, time_limit, max_nodes, batch, progress_interval);
    const auto callback = bab_progress(progress);
    BabResult r;
    {
      py::gil_scoped_release release;
      r = lipschitz_bab_global(net, norm_from_double(p), norm_from_double(q), options, initial_lower,
                               initial_witness, callback);
    }
    return bab_result_dict(r);
  }, py::arg("net"), py::arg("p"), py::arg("q"), py::arg("tol"), py::arg("time_limit"), py::arg("max_nodes"),
     py::arg("initial_lower"), py::arg("initial_witness"), py::arg("progress"), py::arg("batch") = 0,
     py::arg("progress_interval") = 0.5,
     "Branch and bound over activation patterns on all of R^n (a homogenised network): the exact global constant.");
  m.def("deeper_region_point", [](const Network& net, const Eigen::VectorXd& x, const Eigen::VectorXd& lower,
                                  const Eigen::VectorXd& upper, std::optional<Eigen::VectorXd> l1_center,
                                  double l1_radius, double min_depth) -> std::optional<Eigen::VectorXd> {
    std::optional<L1Ball> ball;
    if (l1_center) ball = L1Ball{*l1_center, l1_radius};
    Eigen::VectorXd point;
    {
      py::gil_scoped_release release;
      point = deeper_region_point(net, x, InputBox{lower, upper}, ball, min_depth);
    }
    if (point.size() == 0) return std::nullopt;
    return point;
  }, py::arg("net"), py::arg("x"), py::arg("lower"), py::arg("upper"), py::arg("l1_center") = py::none(),
     py::arg("l1_radius") = 0.0, py::arg("min_depth"),
     "The Chebyshev centre of x's activation region in the box (and l1 ball) where x is within min_depth of a kink "
     "and the centre lies deeper (a hint to certify), else None.");
  m.def("prove_infeasible", &prove_infeasible, "Farkas-certified emptiness of {G x <= h} in a box, with error bounds.");
  m.def("prove_no_nonnegative_solution", &prove_no_nonnegative_solution,
        "Farkas-certified emptiness of {v >= 0 : E v = f} (exact data).");

  m.def("lipsdp_solve", [](std::vector<Eigen::MatrixXd> weights, std::vector<double> alpha, std::vector<double> beta,
                           std::vector<double> weight_error, bool per_layer, double tol, int max_newton_steps,
                           int single_precision_newton_from, double stop_above, std::optional<bool> primal_dual) {
    const SlopeRestrictedNetwork net{std::move(weights), std::move(alpha), std::move(beta), std::move(weight_error)};
    LipSdpOptions options = lipsdp_options(tol, max_newton_steps, single_precision_newton_from);
    options.multipliers = per_layer ? MultiplierKind::PerLayer : MultiplierKind::PerNeuron;
    options.stop_above = stop_above;
    options.primal_dual = primal_dual;
    LipSdpResult r;
    {
      py::gil_scoped_release release;
      r = solve_lipsdp(net, options);
    }
    return lipsdp_result_dict(r);
  }, py::arg("weights"), py::arg("alpha"), py::arg("beta"), py::arg("weight_error"), py::arg("per_layer") = false,
     py::arg("tol") = 1e-7, py::arg("max_newton_steps") = 400,
     py::arg("single_precision_newton_from") = LipSdpOptions{}.single_precision_newton_from,
     py::arg("stop_above") = LipSdpOptions{}.stop_above, py::arg("primal_dual") = py::none(),
     "LipSDP-Neuron (or -Layer) by the chordal primal-dual or the block-tridiagonal barrier method (primal_dual: "
     "None chooses by depth), with its certified bound.");
  m.def("lipsdp_channelwise_solve", [](const Network& net, double tol, int max_newton_steps,
                                       int single_precision_newton_from) {
    LipSdpResult r;
    size_t frequencies = 0;
    {
      py::gil_scoped_release release;
      const SharedLipSdp problem = channelwise_lipsdp(net);
      frequencies = problem.parts.size();
      r = solve_lipsdp(problem, lipsdp_options(tol, max_newton_steps, single_precision_newton_from));
    }
    py::dict d = lipsdp_result_dict(r);
    d["frequencies"] = frequencies;
    return d;
  }, py::arg("net"), py::arg("tol") = 1e-7, py::arg("max_newton_steps") = 400,
     py::arg("single_precision_newton_from") = LipSdpOptions{}.single_precision_newton_from,
     "Channel-wise LipSDP of a convolutional network, one LMI per spatial frequency, with its certified bound.");
  m.def("lipsdp_channelwise_certified_bound", [](const Network& net, const Eigen::VectorXd& multipliers) {
    py::gil_scoped_release release;
    return lipsdp_certified_bound(channelwise_lipsdp(net), multipliers);
  }, py::arg("net"), py::arg("multipliers"),
     "Certified l2 bound proved from channel-wise LipSDP multipliers (+inf when they prove nothing).");
  m.def("channelwise_lipsdp_applies", &channelwise_lipsdp_applies, py::arg("net"),
        "Whether channel-wise LipSDP takes the network (stride-1 convolutions with activations, a global pool, a head).");
  m.def("channelwise_lipsdp", [](const Network& net) {
    const SharedLipSdp problem = channelwise_lipsdp(net);
    py::list parts;
    for (const SlopeRestrictedNetwork& s : problem.parts)
      parts.append(py::make_tuple(s.weights, s.alpha, s.beta, s.weight_error));
    return py::make_tuple(parts, problem.groups, problem.multipliers);
  }, py::arg("net"), "The per-frequency LMIs of channel-wise LipSDP: ([(weights, alpha, beta, weight_error)], groups, n).");
  m.def("slope_restricted_network", [](const Network& net) {
    const SlopeRestrictedNetwork s = slope_restricted_network(net);
    return py::make_tuple(s.weights, s.alpha, s.beta, s.weight_error);
  }, py::arg("net"), "The network as (weights, alpha, beta, weight_error) for LipSDP.");
  m.def("lipsdp_certified_bound", [](std::vector<Eigen::MatrixXd> weights, std::vector<double> alpha,
                                     std::vector<double> beta, std::vector<double> weight_error,
                                     const Eigen::VectorXd& multipliers) {
    const SlopeRestrictedNetwork net{std::move(weights), std::move(alpha), std::move(beta), std::move(weight_error)};
    py::gil_scoped_release release;
    return lipsdp_certified_bound(net, multipliers);
  }, py::arg("weights"), py::arg("alpha"), py::arg("beta"), py::arg("weight_error"), py::arg("multipliers"),
     "Certified l2 Lipschitz bound proved from LipSDP multipliers (+inf when they prove nothing).");

  m.def("seqlip_bound", [](std::vector<Eigen::MatrixXd> weights, std::vector<double> alpha, std::vector<double> beta,
                           std::vector<double> weight_error, double tol, double time_limit, long max_nodes_per_pair) {
    const SlopeRestrictedNetwork net{std::move(weights), std::move(alpha), std::move(beta), std::move(weight_error)};
    SeqLipOptions options;
    options.tol = tol;
    options.time_limit_s = time_limit;
    options.max_nodes_per_pair = max_nodes_per_pair;
    SeqLipResult r;
    {
      py::gil_scoped_release release;
      r = seqlip_bound(net, options);
    }
    py::list pairs;
    for (const SeqLipPair& pair : r.pairs) {
      py::dict d;
      d["upper"] = pair.upper;
      d["attained"] = pair.attained;
      d["nodes"] = pair.nodes;
      d["solved"] = pair.solved;
      d["by_lipsdp"] = pair.by_lipsdp;
      pairs.append(d);
    }
    py::dict d;
    d["certified_upper"] = r.certified_upper;
    d["estimate"] = r.estimate;
    d["split_error"] = r.split_error;
    d["pairs"] = pairs;
    return d;
  }, py::arg("weights"), py::arg("alpha"), py::arg("beta"), py::arg("weight_error"), py::arg("tol") = 1e-6,
     py::arg("time_limit") = 10.0, py::arg("max_nodes_per_pair") = 200000,
     "SeqLip's l2 bound, every pair of layers solved by branch and bound over activation vertices (certified).");

  m.def("highs_version", &highs_version);
  m.def("chebyshev_radius", [](const Eigen::MatrixXd& a, const Eigen::VectorXd& b, const Eigen::VectorXd& lower,
                               const Eigen::VectorXd& upper) {
    Eigen::VectorXd center;
    const double r = chebyshev_radius(a, b, lower, upper, &center);
    return py::make_tuple(r, center);
  }, "Largest inscribed ball radius of {A x <= b, lower <= x <= upper} via HiGHS (-1 if empty).");

  py::register_exception<InvalidNetworkError>(m, "CoreInvalidNetworkError", PyExc_ValueError);
  py::register_exception<UnsupportedLayerError>(m, "CoreUnsupportedLayerError", PyExc_ValueError);
}
