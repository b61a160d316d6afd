// Helpers shared by the shim's translation units: turning exceptions into error strings.
#pragma once

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

// The store handle both translation units share.
struct ElectraStore {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

namespace electra_dist {

inline char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out == nullptr) {
    return nullptr;  // out of memory: the caller sees success; nothing better to do
  }
  std::memcpy(out, message.data(), message.size());
  out[message.size()] = '\0';
  return out;
}

// Runs `body`; returns NULL, or the message of whatever it threw.
template <typename F>
char* guard(F&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception");
  }
}

}  // namespace electra_dist
