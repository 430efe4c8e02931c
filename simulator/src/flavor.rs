//! Which inference server a worker impersonates: it decides the `/metrics` dialect.

use std::fmt;
use std::str::FromStr;

/// The engine whose `/metrics` names a worker exposes. The OpenAI surface is the same for all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Flavor {
    /// vLLM (`vllm:*`).
    #[default]
    Vllm,
    /// SGLang (`sglang:*`).
    Sglang,
    /// TensorRT-LLM's `trtllm-serve` (`trtllm_*`).
    Trtllm,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Vllm => "vllm",
            Flavor::Sglang => "sglang",
            Flavor::Trtllm => "trtllm",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was none of `vllm`, `sglang`, `trtllm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown flavor `{0}` (expected vllm, sglang or trtllm)")]
pub struct UnknownFlavor(pub String);

impl FromStr for Flavor {
    type Err = UnknownFlavor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "vllm" => Ok(Flavor::Vllm),
            "sglang" => Ok(Flavor::Sglang),
            "trtllm" | "tensorrt-llm" => Ok(Flavor::Trtllm),
            _ => Err(UnknownFlavor(s.to_owned())),
        }
    }
}
