//! Worker confinement: the layers applied after fork, before the first request.
