// SPDX-License-Identifier: MIT
// Asio's non-template code, compiled once for every user of patio
// (ASIO_SEPARATE_COMPILATION is part of patio::patio's interface).
#include <asio/impl/src.hpp>
#include <asio/ssl/impl/src.hpp>
