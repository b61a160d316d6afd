// c10d::TCPStore behind a C interface (see dist_shim.h), plus setting a tensor's gradient.

#include "dist_shim.h"
#include "dist_common.h"

#include <ATen/core/Tensor.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <string>
#include <vector>

struct ElectraBytes {
  std::vector<uint8_t> data;
};

using electra_dist::guard;

extern "C" {

void electra_dist_free(char* message) { std::free(message); }

char* electra_store_new(const char* host, uint16_t port, int is_server, uint64_t world_size,
                        int64_t timeout_ms, ElectraStore** out) {
  *out = nullptr;
  return guard([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server != 0;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    opts.waitWorkers = false;  // the Rust side meets every rank through keys, naming the missing
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new ElectraStore{std::move(store)};
  });
}

void electra_store_free(ElectraStore* store) {
  try {
    delete store;
  } catch (...) {
  }
}

uint16_t electra_store_port(const ElectraStore* store) {
  try {
    return store->store->getPort();
  } catch (...) {
    return 0;
  }
}

char* electra_store_set(ElectraStore* store, const char* key, const uint8_t* data, size_t len) {
  return guard([&] {
    std::vector<uint8_t> value(data, data + len);
    store->store->set(std::string(key), value);
  });
}

char* electra_store_get(ElectraStore* store, const char* key, ElectraBytes** out) {
  *out = nullptr;
  return guard([&] {
    auto value = store->store->get(std::string(key));
    *out = new ElectraBytes{std::move(value)};
  });
}

char* electra_store_wait(ElectraStore* store, const char* key) {
  return guard([&] { store->store->wait({std::string(key)}); });
}

char* electra_store_delete(ElectraStore* store, const char* key) {
  return guard([&] { store->store->deleteKey(std::string(key)); });
}

char* electra_store_num_keys(ElectraStore* store, int64_t* out) {
  *out = 0;
  return guard([&] { *out = store->store->getNumKeys(); });
}

const uint8_t* electra_bytes_data(const ElectraBytes* bytes) { return bytes->data.data(); }

size_t electra_bytes_len(const ElectraBytes* bytes) { return bytes->data.size(); }

void electra_bytes_free(ElectraBytes* bytes) { delete bytes; }

char* electra_tensor_set_grad(void* param, void* grad) {
  return guard([&] {
    auto* p = static_cast<at::Tensor*>(param);
    const auto* g = static_cast<const at::Tensor*>(grad);
    p->mutable_grad() = *g;
  });
}

}  // extern "C"
