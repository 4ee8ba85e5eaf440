//! Confinement tests that drive the probe host binary (filled in below).
