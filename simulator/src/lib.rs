//! Simulated GPU inference workers (being written).
