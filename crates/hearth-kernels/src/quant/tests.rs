//! Unit tests of the public API.
