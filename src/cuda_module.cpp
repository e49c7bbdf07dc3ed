// Bindings only for the optional CUDA kernels; imported lazily by lipcert._cuda_loader.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "lipcert/cuda/gram_iteration.hpp"
#include "lipcert/cuda/power_iteration.hpp"
#include "lipcert/cuda/subdomain_bounds.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "lipcert CUDA kernels (private)";
  py::module_::import("lipcert._core");  // registers the Network and SubdomainBounder types used below
  py::class_<lipcert::cuda::GpuSubdomainBounder, lipcert::SubdomainBounder,
             std::shared_ptr<lipcert::cuda::GpuSubdomainBounder>>(m, "GpuSubdomainBounder")
      .def(py::init<const lipcert::Network&>(), py::arg("net"), py::keep_alive<1, 2>(),
           "Uploads the network to the GPU; raises ValueError for networks outside the GPU path.")
      .def("last_timing", [](const lipcert::cuda::GpuSubdomainBounder& b) {
            const auto t = b.last_timing();
            py::dict d;
            d["pack_s"] = t.pack_s;
            d["device_s"] = t.device_s;
            d["assemble_s"] = t.assemble_s;
            return d;
          }, "Seconds the last batch spent packing on the host, on the device (with transfers) and assembling.");
  m.def("device_count", &lipcert::cuda::device_count);
  m.def("gram_spectral_upper",
        [](const std::vector<py::array_t<double, py::array::f_style | py::array::forcecast>>& matrices,
           int max_iterations) {
          std::vector<lipcert::cuda::MatrixView> views;
          for (const auto& a : matrices) {
            if (a.ndim() != 2) throw std::invalid_argument("gram_spectral_upper: expected 2-D arrays");
            views.push_back({a.data(), static_cast<int>(a.shape(0)), static_cast<int>(a.shape(1))});
          }
          py::gil_scoped_release release;
          std::vector<std::pair<double, int>> out;
          for (const auto& g : lipcert::cuda::gram_spectral_upper(views, max_iterations)) out.emplace_back(g.upper, g.iterations);
          return out;
        },
        py::arg("matrices"), py::arg("max_iterations") = 24,
        "Certified upper bounds (upper, squarings) on ||A||_2 by Gram iteration on the GPU.");
  m.def("conv_gram_spectral_upper",
        [](const lipcert::Network& net, int index, int max_iterations) {
          if (index < 0 || index >= static_cast<int>(net.layers().size())) throw py::index_error("layer index out of range");
          py::gil_scoped_release release;
          const auto g = lipcert::cuda::conv_gram_spectral_upper(net.layers()[index], max_iterations);
          return std::make_pair(g.upper, g.iterations);
        },
        py::arg("net"), py::arg("index"), py::arg("max_iterations") = 24,
        "Certified spectral norm of a convolution (circular embedding, per-frequency Gram iteration on the GPU).");
  m.def("batched_power_iteration",
        [](const std::vector<py::array_t<double, py::array::f_style | py::array::forcecast>>& matrices,
           int iterations, unsigned long long seed) {
          std::vector<lipcert::cuda::MatrixView> views;
          for (const auto& a : matrices) {
            if (a.ndim() != 2) throw std::invalid_argument("batched_power_iteration: expected 2-D arrays");
            views.push_back({a.data(), static_cast<int>(a.shape(0)), static_cast<int>(a.shape(1))});
          }
          py::gil_scoped_release release;
          return lipcert::cuda::batched_power_iteration(views, iterations, seed);
        },
        py::arg("matrices"), py::arg("iterations"), py::arg("seed") = 0,
        "Power-iteration estimates of ||A||_2 (lower estimates, not certified) for each matrix.");
}
