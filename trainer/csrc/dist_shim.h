// The C interface between `electra_trainer::dist` (Rust) and PyTorch's c10d (C++).
//
// Every function that can fail returns NULL on success or a malloc'd, NUL-terminated error
// message that the caller frees with `electra_dist_free`. No C++ exception crosses this
// interface: each function catches everything.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ElectraStore ElectraStore;  // a c10d::TCPStore (server on rank 0)
typedef struct ElectraBytes ElectraBytes;  // a value read from the store
typedef struct ElectraNccl ElectraNccl;    // a c10d::ProcessGroupNCCL

// Frees an error message.
void electra_dist_free(char* message);

// Connects to (or, with is_server, serves) the TCPStore at host:port. With port 0 and
// is_server, the server binds a free port (see electra_store_port).
char* electra_store_new(const char* host, uint16_t port, int is_server, uint64_t world_size,
                        int64_t timeout_ms, ElectraStore** out);
void electra_store_free(ElectraStore* store);
uint16_t electra_store_port(const ElectraStore* store);
char* electra_store_set(ElectraStore* store, const char* key, const uint8_t* data, size_t len);
// Waits (up to the store's timeout) for the key, then reads it.
char* electra_store_get(ElectraStore* store, const char* key, ElectraBytes** out);
// Waits (up to the store's timeout) for the key without reading it.
char* electra_store_wait(ElectraStore* store, const char* key);
char* electra_store_delete(ElectraStore* store, const char* key);
char* electra_store_num_keys(ElectraStore* store, int64_t* out);

const uint8_t* electra_bytes_data(const ElectraBytes* bytes);
size_t electra_bytes_len(const ElectraBytes* bytes);
void electra_bytes_free(ElectraBytes* bytes);

// Sets `param`'s gradient (both are at::Tensor*, i.e. tch's C_tensor).
char* electra_tensor_set_grad(void* param, void* grad);

// Only in builds with NCCL (dist_nccl.cpp; the Rust side has cfg(electra_nccl)).
char* electra_nccl_new(ElectraStore* store, const char* prefix, int rank, int world_size,
                       int device, int64_t timeout_ms, ElectraNccl** out);
// Shuts the group down (abort: without waiting for pending work) and frees it.
void electra_nccl_free(ElectraNccl* group, int abort);
char* electra_nccl_all_reduce_sum(ElectraNccl* group, void* tensor);
char* electra_nccl_broadcast(ElectraNccl* group, void* tensor, int root);
char* electra_nccl_barrier(ElectraNccl* group);

#ifdef __cplusplus
}
#endif
