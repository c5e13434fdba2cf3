// SPDX-License-Identifier: MIT
#pragma once

// msgpack-cxx without Boost: the adaptors patio supports are all std types.
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif

#include <msgpack.hpp>
