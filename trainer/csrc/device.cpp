// Device helpers tch does not expose: autocast per device type and dtype (tch's
// `autocast` only switches CUDA's, in float16), and the caching allocator's peak memory.
// Compiled with the store shim, so every build has them.
#include <ATen/DeviceAccelerator.h>
#include <ATen/autocast_mode.h>
#include <c10/core/Allocator.h>

#include "dist_common.h"

extern "C" {

// Autocast for `device_type` (0 CPU, 1 CUDA) on or off, in bfloat16. Turning it on
// increments autocast's nesting; turning it off decrements it and clears the cast cache
// when the outermost region ends, as torch.autocast's context manager does.
char* electra_autocast(int device_type, int enabled) {
  return electra_dist::guard([&] {
    const auto type = device_type == 1 ? at::kCUDA : at::kCPU;
    if (enabled) {
      at::autocast::set_autocast_dtype(type, at::kBFloat16);
      at::autocast::set_autocast_enabled(type, true);
      at::autocast::increment_nesting();
    } else {
      at::autocast::set_autocast_enabled(type, false);
      if (at::autocast::decrement_nesting() == 0) {
        at::autocast::clear_cache();
      }
    }
  });
}

// Peak bytes allocated by libtorch's CUDA caching allocator on `device` since the last
// reset (`reset` != 0 resets it after reading).
char* electra_cuda_peak_allocated(int device, int reset, int64_t* out) {
  return electra_dist::guard([&] {
    auto* allocator = at::getDeviceAllocator(at::kCUDA);
    const auto index = static_cast<c10::DeviceIndex>(device);
    const auto stats = allocator->getDeviceStats(index);
    *out = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
    if (reset) {
      allocator->resetPeakStats(index);
    }
  });
}

}  // extern "C"
