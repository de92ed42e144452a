//! Job handlers.

pub mod evaluation;
pub mod turn;
