// c10d::ProcessGroupNCCL behind a C interface (see dist_shim.h). Built only when libtorch has
// CUDA and the NCCL and CUDA headers are found (build.rs; Rust cfg electra_nccl).

#include "dist_shim.h"
#include "dist_common.h"

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <string>
#include <vector>

struct ElectraNccl {
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> group;
  int device;
};

using electra_dist::guard;

extern "C" {

char* electra_nccl_new(ElectraStore* store, const char* prefix, int rank, int world_size,
                       int device, int64_t timeout_ms, ElectraNccl** out) {
  *out = nullptr;
  return guard([&] {
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>(
        std::string(prefix), c10::static_intrusive_pointer_cast<c10d::Store>(store->store));
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = std::chrono::milliseconds(timeout_ms);
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        c10::static_intrusive_pointer_cast<c10d::Store>(prefixed), rank, world_size, options);
    *out = new ElectraNccl{std::move(group), device};
  });
}

void electra_nccl_free(ElectraNccl* group, int abort) {
  if (group == nullptr) {
    return;
  }
  try {
    if (abort != 0) {
      group->group->abort();
    } else {
      group->group->shutdown();
    }
  } catch (...) {
  }
  try {
    delete group;
  } catch (...) {
  }
}

char* electra_nccl_all_reduce_sum(ElectraNccl* group, void* tensor) {
  return guard([&] {
    std::vector<at::Tensor> tensors{*static_cast<at::Tensor*>(tensor)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    // Stream-ordered: wait() makes the current stream wait for NCCL's, the host goes on.
    group->group->allreduce(tensors, opts)->wait();
  });
}

char* electra_nccl_broadcast(ElectraNccl* group, void* tensor, int root) {
  return guard([&] {
    std::vector<at::Tensor> tensors{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    group->group->broadcast(tensors, opts)->wait();
  });
}

char* electra_nccl_barrier(ElectraNccl* group) {
  return guard([&] {
    c10d::BarrierOptions opts;
    opts.device_ids = {static_cast<int64_t>(group->device)};
    group->group->barrier(opts)->wait();
  });
}

}  // extern "C"
