//! The Corvid server library (placeholder, being written).
