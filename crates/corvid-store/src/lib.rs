//! Corvid storage (placeholder, being written).
