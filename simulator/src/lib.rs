//! Simulated GPU inference workers that speak the OpenAI API like vLLM.
pub mod engine;
mod hash;
pub mod sampling;
pub mod tokenizer;
