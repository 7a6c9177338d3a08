// SHA-256 of a file (FIPS 180-4), for checking an exported directory's operator
// library against the hash its config.json recorded before loading it.
#pragma once

#include <string>

namespace fastergpt_cpp {

// Lowercase hex digest; throws std::runtime_error if the file cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace fastergpt_cpp
