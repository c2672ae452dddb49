// Error type used across convgen. Every user-facing failure (bad spec, bad file,
// shape mismatch, kernel failure) is a convgen::Error whose message names the
// problem in one line; the CLI turns it into exit code 2.
#pragma once

#include <stdexcept>
#include <string>

namespace convgen {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string &message) : std::runtime_error(message) {}
};

}  // namespace convgen
